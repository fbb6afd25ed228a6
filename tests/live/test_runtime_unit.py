"""The live runtime on its own: an in-memory LiveStore (a second implementation of the interface,
which proves it is enough), no database, no Flask, no worker processes. The real decision engine
and warning system decide; frames carry their time, nothing sleeps."""
from __future__ import annotations

import time

import numpy as np
import pytest

from person_pipeline import Detection, Detections
from proctor.live import (AuditEntry, FrameResult, LiveError, LiveRuntime, LiveSettings, LiveStore, SessionInfo,
                          ViolationRecord)

STUDENT, SESSION, EXAM, ADMIN = 7, 70, 3, 1
PERSON = Detection(0, "person", 0.9, (120, 40, 520, 480))
PHONE = Detection(67, "cell phone", 0.8, (300, 300, 360, 400))


class MemoryStore:
    """LiveStore in memory; records every call."""

    def __init__(self):
        self.sessions: dict[int, dict] = {}
        self.violations: dict[int, ViolationRecord] = {}
        self.finished: list[tuple[int, str]] = []
        self.audits: list[AuditEntry] = []

    def add_session(self, session_id=SESSION, student_id=STUDENT, name="Ada Lovelace", **exam):
        self.sessions[session_id] = {"student_id": student_id, "status": "IN_PROGRESS", "name": name,
                                     "auto_terminate": None, "disabled": frozenset(), **exam}

    def load_session(self, session_id):
        s = self.sessions.get(session_id)
        if s is None:
            return None
        return SessionInfo(session_id, s["student_id"], s["status"], s["name"], EXAM, "Unit exam",
                           exam_auto_terminate=s.get("exam_auto_terminate", False),
                           session_auto_terminate=s["auto_terminate"],
                           exam_disabled_rules=frozenset(s.get("exam_disabled", ())), session_disabled_rules=s["disabled"],
                           exam_thresholds=s.get("thresholds", "{}"), embedding=s.get("embedding"),
                           warning_count=s.get("warning_count", 0), warned_at=s.get("warned_at", ()))

    def session_states(self, session_ids):
        return {i: self.sessions[i]["status"] for i in session_ids if i in self.sessions}

    def save_violation(self, violation):
        for vid, stored in self.violations.items():  # idempotent on the client id, as the interface says
            if violation.client_id and stored.client_id == violation.client_id:
                return vid
        vid = len(self.violations) + 1
        self.violations[vid] = violation
        return vid

    def finish_session(self, session_id, reason):
        if session_id not in self.sessions:
            raise LiveError("no such exam session", 404)
        self.sessions[session_id]["status"] = "TERMINATED"
        self.finished.append((session_id, reason))

    def set_auto_terminate(self, session_id, enabled, audit):
        self.sessions[session_id]["auto_terminate"] = enabled
        self.audits.append(audit)

    def set_disabled_rules(self, session_id, rules, audit):
        self.sessions[session_id]["disabled"] = frozenset(rules)
        self.audits.append(audit)

    def audit(self, entry):
        self.audits.append(entry)


class ScriptedPool:
    """Stands in for the worker pool: answers each job at once with respond(job)."""

    def __init__(self, respond):
        self.respond = respond
        self.jobs = []
        self._done = []
        self.crashes = []

    def can_take(self, student_id):
        return True

    def submit(self, job):
        self.jobs.append(job)
        self._done.append(self.respond(job))
        return True

    def results(self):
        out, self._done = self._done, []
        return out

    def forget(self, student_id):
        pass


@pytest.fixture
def store():
    s = MemoryStore()
    s.add_session()
    return s


def make_runtime(store, tmp_path, respond=None, **vision):
    rt = LiveRuntime(LiveSettings(data_dir=str(tmp_path), enabled=False, vision_overrides=vision), store,
                     autostart=False)
    events = []
    rt.events.subscribe(lambda name, payload: events.append((name, payload)))
    if respond is not None:
        rt.pool = ScriptedPool(respond)
    return rt, events


def feed(rt, t, student_id=STUDENT, session_id=SESSION):
    """One camera frame at frame time t, dispatched and its result handled (one loop step)."""
    rt.submit_frame(student_id, session_id, np.full((480, 640, 3), 90, np.uint8), server_ts=t)
    rt.step()


def result_for(job, detections=None):
    return FrameResult(job.student_id, job.session_id, job.seq, job.frame_ts, job.received_mono, worker_id=0,
                       detections=detections if job.run_detector else None, detector_ran=job.run_detector,
                       frame_mean=90.0, frame_diff=3.0)


def test_the_memory_store_is_a_live_store(store):
    assert isinstance(store, LiveStore)


def test_tab_switch_is_saved_through_the_store_and_warned(store, tmp_path):
    rt, events = make_runtime(store, tmp_path)
    issued = rt.browser_event(STUDENT, SESSION, "TAB_SWITCH", {"hidden_ms": 1200, "note": "x" * 500})
    assert [(w["type"], w["count"], w["terminate"]) for w in issued] == [("TAB_SWITCH", 1, False)]
    assert list(store.violations) == [issued[0]["violation_id"]]
    saved = store.violations[issued[0]["violation_id"]]
    assert (saved.student_id, saved.session_id, saved.type, saved.evidence_path) == (STUDENT, SESSION, "TAB_SWITCH", None)
    assert saved.details["warning_count"] == 1 and saved.details["hidden_ms"] == 1200 and len(saved.details["note"]) == 200
    names = [n for n, _ in events]
    assert names == ["student_joined", "student_violation", "student_warning"]
    assert events[0][1]["name"] == "Ada Lovelace"
    assert events[1][1]["violation_id"] == issued[0]["violation_id"] and events[1][1]["type"] == "TAB_SWITCH"
    assert events[2][1] == {"student_id": STUDENT, "session_id": SESSION, "type": "TAB_SWITCH",
                            "message": issued[0]["message"], "count": 1, "incident": 1, "incident_opened": True,
                            "incident_part": 1, "incident_weight": 1}
    assert rt.status(STUDENT)["warnings"] == 1


def test_a_reopened_stream_counts_on_from_the_stored_warnings(tmp_path):
    """Two warnings before a restart, auto-termination at three: the first warning after it terminates."""
    store = MemoryStore()
    store.add_session(warning_count=2, exam_auto_terminate=True)
    rt, events = make_runtime(store, tmp_path)
    [issued] = rt.browser_event(STUDENT, SESSION, "TAB_SWITCH", {})
    assert (issued["count"], issued["terminate"]) == (3, True)
    assert store.finished and store.finished[0][0] == SESSION


def test_a_reopened_stream_keeps_the_cooldowns(tmp_path):
    """A tab switch warned 2 s (frame time) before the stream was opened again: another one now is held
    by the 5 s cooldown, not warned and stored a second time; one later than the cooldown is warned."""
    store = MemoryStore()
    now = time.time()
    store.add_session(warning_count=1, warned_at=(("TAB_SWITCH", now - 2.0),))
    rt, _ = make_runtime(store, tmp_path)
    assert rt.browser_event(STUDENT, SESSION, "TAB_SWITCH", {}) == []
    assert store.violations == {}
    stream = rt._streams[STUDENT]
    assert stream.warnings.count(STUDENT) == 1


def test_terminate_finishes_through_the_store_and_publishes(store, tmp_path):
    rt, events = make_runtime(store, tmp_path)
    rt.browser_event(STUDENT, SESSION, "FULLSCREEN_EXIT", {})
    rt.terminate(SESSION, "  Seen using notes ", ADMIN)
    assert store.finished == [(SESSION, "Seen using notes")]
    assert [(a.actor_id, a.action, a.target_id) for a in store.audits] == [(ADMIN, "live.terminate", SESSION)]
    assert ("exam_terminated", {"student_id": STUDENT, "session_id": SESSION, "reason": "Seen using notes",
                                "by_admin_id": ADMIN, "auto": False}) in events
    assert ("student_left", {"student_id": STUDENT, "session_id": SESSION, "status": "TERMINATED"}) in events
    assert rt.status(STUDENT)["active"] is False
    with pytest.raises(LiveError) as err:
        rt.terminate(SESSION, "again", ADMIN)  # the store says it is over: nothing is published twice
    assert err.value.status == 409 and len(store.finished) == 1
    with pytest.raises(LiveError) as err:
        rt.browser_event(STUDENT, SESSION, "TAB_SWITCH", {})
    assert err.value.status == 409


def test_auto_terminate_and_rule_switches_go_through_the_store(store, tmp_path):
    rt, events = make_runtime(store, tmp_path, INCIDENT_WINDOW_S=0)  # three events at once: three incidents here
    assert rt.set_rule(SESSION, "TAB_SWITCH", False, ADMIN) == ["TAB_SWITCH"]
    assert store.sessions[SESSION]["disabled"] == {"TAB_SWITCH"}
    assert rt.browser_event(STUDENT, SESSION, "TAB_SWITCH", {}) == []  # the new stream read it from the store
    assert rt.set_auto_terminate(SESSION, True, ADMIN) is True
    for kind in ("FULLSCREEN_EXIT", "VOICE_DETECTED", "CAMERA_OFF"):
        rt.browser_event(STUDENT, SESSION, kind, {})
    assert store.sessions[SESSION]["status"] == "TERMINATED" and store.finished[0][0] == SESSION
    assert [a.action for a in store.audits] == ["live.set_rule", "live.set_auto_terminate", "live.auto_terminate"]
    assert store.audits[0].details == {"rule": "TAB_SWITCH", "enabled": False}
    assert [p["auto"] for n, p in events if n == "exam_terminated"] == [True]


def test_events_of_one_moment_are_one_incident_and_do_not_terminate(store, tmp_path):
    """Three browser rules within a moment (default INCIDENT_WINDOW_S): three violations stored, one incident,
    warning 1 of 3, and auto-terminate (threshold 3) does not end the exam; the old count terminated it."""
    rt, events = make_runtime(store, tmp_path)
    assert rt.set_auto_terminate(SESSION, True, ADMIN) is True
    issued = [w for kind in ("FULLSCREEN_EXIT", "VOICE_DETECTED", "CAMERA_OFF")
              for w in rt.browser_event(STUDENT, SESSION, kind, {})]
    assert [(w["count"], w["incident"], w["incident_opened"], w["incident_part"], w["terminate"]) for w in issued] == [
        (1, 1, True, 1, False), (1, 1, False, 2, False), (1, 1, False, 3, False)]
    assert store.sessions[SESSION]["status"] == "IN_PROGRESS" and not store.finished
    saved = [store.violations[w["violation_id"]].details for w in issued]
    assert [(d["incident"], d["incident_opened"], d["warning_count"]) for d in saved] == [(1, True, 1), (1, False, 1),
                                                                                        (1, False, 1)]
    assert saved[0]["incident_t"] == saved[2]["incident_t"] == saved[0]["frame_t"]
    assert "warning 1 of 3" in saved[0]["reason"] and "part 3 of incident 1" in saved[2]["reason"]
    pushed = [p for n, p in events if n == "student_warning"]
    assert [(p["count"], p["incident"], p["incident_opened"]) for p in pushed] == [(1, 1, True), (1, 1, False),
                                                                                  (1, 1, False)]
    assert [p["incident"] for n, p in events if n == "student_violation"] == [1, 1, 1]


def test_unknown_and_finished_sessions_are_refused(store, tmp_path):
    rt, events = make_runtime(store, tmp_path)
    with pytest.raises(LiveError) as err:
        rt.browser_event(STUDENT, SESSION + 1, "TAB_SWITCH", {})
    assert err.value.status == 404
    with pytest.raises(LiveError) as err:
        rt.browser_event(STUDENT + 1, SESSION, "TAB_SWITCH", {})  # someone else's session
    assert err.value.status == 404
    store.sessions[SESSION]["status"] = "COMPLETED"
    with pytest.raises(LiveError) as err:
        rt.session_started(STUDENT, SESSION)
    assert err.value.status == 409
    assert events == [] and store.violations == {}


def test_a_stream_whose_session_ended_elsewhere_is_closed(store, tmp_path):
    rt, events = make_runtime(store, tmp_path)
    rt.session_started(STUDENT, SESSION)
    store.sessions[SESSION]["status"] = "COMPLETED"
    rt._last_recheck_mono = float("-inf")  # the periodic re-read is due now
    rt.step()
    assert rt.status(STUDENT)["active"] is False
    assert ("student_left", {"student_id": STUDENT, "session_id": SESSION, "status": "COMPLETED"}) in events


def test_the_hud_names_the_student(store, tmp_path):
    """vision_ui.draw_hud draws status["label"]: the processed view and the raw live view both name the student."""
    from proctor.live.mjpeg import _hud_status
    from proctor.live.views import hud_status
    from vision_ui import draw_hud

    rt, _ = make_runtime(store, tmp_path, respond=result_for)
    feed(rt, 100.0)
    status = hud_status(rt._streams[STUDENT])
    assert status["label"] == "Ada Lovelace"
    frame = np.full((480, 640, 3), 90, np.uint8)
    unlabelled = {k: v for k, v in status.items() if k != "label"}
    assert (draw_hud(frame, None, None, status, []) != draw_hud(frame, None, None, unlabelled, [])).any()
    assert _hud_status(rt.status(STUDENT))["label"] == "Ada Lovelace"  # the raw frame's HUD (live view)


def test_the_hud_is_drawn_only_when_somebody_looks(store, tmp_path, monkeypatch):
    """Workers return observations; the HUD is drawn on the analysed frame when a view asks for it,
    once per frame however many viewers ask, and again when the frame changes."""
    import vision_ui

    drawn = []
    real = vision_ui.draw_hud
    monkeypatch.setattr(vision_ui, "draw_hud", lambda *a, **k: drawn.append(a[4]) or real(*a, **k))
    rt, _ = make_runtime(store, tmp_path, respond=result_for)
    for i in range(6):
        feed(rt, 100.0 + i * 0.5)
    assert drawn == []  # nobody looked: nothing drawn, nothing encoded
    first = rt.latest_view(STUDENT)
    again = rt.latest_view(STUDENT)
    assert first.kind == "processed" and first.jpeg.startswith(b"\xff\xd8") and again.jpeg is first.jpeg
    assert len(drawn) == 1
    feed(rt, 104.0)
    assert rt.latest_view(STUDENT).jpeg is not first.jpeg and len(drawn) == 2


def test_a_frame_the_worker_could_not_decode_counts_as_a_black_camera(store, tmp_path):
    """Bytes that are not a picture must not slip past proctoring: CAMERA_OFF after its hold time."""
    def undecodable(job):
        return FrameResult(job.student_id, job.session_id, job.seq, job.frame_ts, job.received_mono, worker_id=0,
                           frame_mean=0.0, frame_diff=0.0, errors=["could not decode frame"])

    rt, _ = make_runtime(store, tmp_path, respond=undecodable)
    for i in range(16):
        feed(rt, 300.0 + i * 0.5)
    assert [v.type for v in store.violations.values()] == ["CAMERA_OFF"]


def _phone_runs(runs_with_phone, frames: int, t0=200.0, every_s=0.5):
    """Frames every `every_s` s (2 frames/s, as the exam page sends them); the detector runs when the
    stream's cadence says so (proctor/live/cadence.py) and its run i sees a phone when i is in
    runs_with_phone. The scripted results carry no face and no motion: only the cadence's steady
    interval and its watching over a seen object decide."""
    runs = iter(range(10 ** 6))

    def respond(job):
        if not job.run_detector:
            return result_for(job)
        items = (PERSON, PHONE) if next(runs) in runs_with_phone else (PERSON,)
        return result_for(job, Detections(items, "unit", (640, 480)))

    return respond, [t0 + i * every_s for i in range(frames)]


def _prohibited(store):
    return [v for v in store.violations.values() if v.type == "PROHIBITED_OBJECT"]


def test_a_single_phone_sighting_is_not_a_prohibited_object(store, tmp_path):
    """One detector run with a phone, then runs without: ObjectEvidence (2 of the last 5 runs) never
    confirms it. The sighting makes the cadence watch (a run on every frame) until it has left the
    evidence window (5 runs), then the steady interval (3 s) is back."""
    respond, times = _phone_runs({0}, frames=12)
    rt, events = make_runtime(store, tmp_path, respond)
    for t in times:
        feed(rt, t)
    frames = rt.status(STUDENT)["frames"]
    assert rt.stats.counters["processed"] == 12 and frames["detector_runs"] == 7
    # frame 0 (first), frames 1-5 while the sighting is in the window, frame 11 (3 s after frame 5)
    assert frames["detector_cadence"] == {"watching": False, "holding": False,
                                          "runs": {"first": 1, "watch": 5, "steady": 1}}
    assert _prohibited(store) == [] and "PROHIBITED_OBJECT" not in rt.status(STUDENT)["active_rules"]


def test_repeated_phone_sightings_are_a_prohibited_object(store, tmp_path):
    """A phone in every detector run: seen on the first frame, looked at again on the next frame
    (the cadence watches a candidate), confirmed there (t0 + 0.5 s) and reported TIME_BANNED_OBJECT_S
    (1.5 s) of frame time later. Confirmed and seen twice in a row, the phone is held: the detector
    then runs every DETECTOR_HOLD_INTERVAL_S (1.5 s) while it is there, not on every frame."""
    respond, times = _phone_runs(range(10 ** 6), frames=12)
    rt, events = make_runtime(store, tmp_path, respond)
    for t in times:
        feed(rt, t)
    found = _prohibited(store)
    assert len(found) == 1, store.violations
    assert found[0].details["frame_t"] == pytest.approx(200.0 + 0.5 + 1.5)
    assert [o["label"] for o in found[0].details["objects"]] == ["cell phone"]
    assert [o["label"] for o in rt.status(STUDENT)["objects"]] == ["person", "cell phone"]
    # frames 0 and 1, then every third frame (4, 7, 10): 5 runs for 12 frames
    assert rt.status(STUDENT)["frames"]["detector_runs"] == 5
    assert rt.status(STUDENT)["frames"]["detector_cadence"]["runs"] == {"first": 1, "watch": 1, "hold": 3}


def test_a_phone_seen_by_a_steady_run_is_confirmed_on_the_next_frame(store, tmp_path):
    """Nothing for 4 s (the detector on frames 0 and 6 only, 3 s apart), then a phone from frame 8 on:
    the steady run at frame 12 (t0 + 6 s) sees it, the next frame confirms it, and it is reported
    TIME_BANNED_OBJECT_S later."""
    runs_with_phone = set(range(2, 10 ** 6))  # runs 0 and 1 are frames 0 and 6
    respond, times = _phone_runs(runs_with_phone, frames=20)
    rt, events = make_runtime(store, tmp_path, respond)
    for t in times:
        feed(rt, t)
    found = _prohibited(store)
    assert len(found) == 1 and found[0].details["frame_t"] == pytest.approx(200.0 + 6.5 + 1.5)
    # then held: every DETECTOR_HOLD_INTERVAL_S (frames 16 and 19)
    assert rt.status(STUDENT)["frames"]["detector_cadence"]["runs"] == {"first": 1, "steady": 2, "watch": 1, "hold": 2}


def test_an_exam_stored_with_the_retired_detector_every_n_frames_still_opens(store, tmp_path, caplog):
    """DETECTOR_EVERY_N_FRAMES is gone (the cadence replaced it): an exam whose stored thresholds still
    name it keeps its other overrides, and the old key is ignored with a warning, never an error."""
    store.sessions[SESSION]["thresholds"] = '{"DETECTOR_EVERY_N_FRAMES": 4, "TIME_BANNED_OBJECT_S": 3.0}'
    respond, times = _phone_runs(range(10 ** 6), frames=10)
    rt, events = make_runtime(store, tmp_path, respond)
    with caplog.at_level("WARNING", logger="config_vision"):
        for t in times:
            feed(rt, t)
    stream = rt._streams[STUDENT]
    assert stream.rules.config.TIME_BANNED_OBJECT_S == 3.0 and rt.status(STUDENT)["frames"]["processed"] == 10
    assert not any("bad vision thresholds" in r.getMessage() for r in caplog.records)
    # Confirmed at t0 + 0.5 s, reported after the exam's own 3 s.
    assert [v.details["frame_t"] for v in _prohibited(store)] == [pytest.approx(200.0 + 0.5 + 3.0)]


def test_the_dashboard_order_is_the_servers_risk(store, tmp_path):
    """Each status carries `risk` (suspicion score, warnings); active_students() sorts by it, higher
    first, then by name, and the dashboard re-sorts live updates by the same list."""
    store.add_session(session_id=71, student_id=8, name="Brian Kernighan")
    store.add_session(session_id=72, student_id=9, name="Alan Turing")
    rt, _ = make_runtime(store, tmp_path)
    for student, session in ((STUDENT, SESSION), (8, 71), (9, 72)):
        rt.session_started(student, session)
    rt.browser_event(8, 71, "TAB_SWITCH", {})
    rt.browser_event(8, 71, "VOICE_DETECTED", {"level": -20.0})
    rt.browser_event(STUDENT, SESSION, "FULLSCREEN_EXIT", {})
    rows = rt.active_students()
    risks = [r["status"]["risk"] for r in rows]
    for r in rows:
        st = r["status"]
        assert st["risk"] == [round(st["suspicion"]["score"], 3), st["warnings"]]
    assert [r["name"] for r in rows][0] == "Brian Kernighan"  # two warnings, the highest score
    assert risks == sorted(risks, reverse=True)
    assert [r["name"] for r in rows][-1] == "Alan Turing" and risks[-1] == [0.0, 0]


class FlakyStore(MemoryStore):
    """The database blinks: the next `down` saves raise; with `lose_reply`, one more save is stored but its reply lost."""

    def __init__(self, down: int, lose_reply: bool = False):
        super().__init__()
        self.down, self.lose_reply, self.attempts = down, lose_reply, 0

    def save_violation(self, violation):
        self.attempts += 1
        if self.down > 0:
            self.down -= 1
            raise ConnectionError("database is down")
        vid = super().save_violation(violation)
        if self.lose_reply:
            self.lose_reply = False
            raise ConnectionError("connection lost after the commit")
        return vid


def test_a_violation_the_store_refuses_is_retried_and_stored_once_across_a_restart(tmp_path):
    store = FlakyStore(down=3, lose_reply=True)
    store.add_session()
    rt, events = make_runtime(store, tmp_path)
    rt.violation_queue.first_s = 0.0  # no back-off wait in the test
    issued = rt.browser_event(STUDENT, SESSION, "TAB_SWITCH", {})
    assert [w["violation_id"] for w in issued] == [None]  # warned now, stored later
    assert store.violations == {} and rt.pipeline_status()["violations_waiting"] == 1
    queue_file = tmp_path / "outbox" / "violations.jsonl"
    assert len(queue_file.read_text().splitlines()) == 1
    rt.step()  # fails again (2 of 3)
    assert store.violations == {} and rt.pipeline_status()["violations_waiting"] == 1

    # The process dies here; a new runtime on the same data directory replays the queue from disk.
    rt2, _ = make_runtime(store, tmp_path)
    assert rt2.pipeline_status()["violations_waiting"] == 1
    rt2.violation_queue.first_s = 0.0
    rt2.step()  # the database is still down (3 of 3)
    rt2.step()  # stored, but the reply is lost: queued still
    assert len(store.violations) == 1 and rt2.pipeline_status()["violations_waiting"] == 1
    rt2.step()  # the retry finds it stored by its client id
    rt2.step()
    assert rt2.pipeline_status()["violations_waiting"] == 0 and queue_file.read_text() == ""
    (saved,) = store.violations.values()
    assert (saved.session_id, saved.type) == (SESSION, "TAB_SWITCH") and len(saved.client_id) == 36
    assert store.attempts == 5


def test_violations_queue_in_order_while_the_store_is_down(tmp_path):
    store = FlakyStore(down=100)
    store.add_session()
    rt, _ = make_runtime(store, tmp_path, WARNING_COOLDOWN_S=0.0)
    for kind in ("TAB_SWITCH", "FULLSCREEN_EXIT", "TAB_SWITCH"):
        rt.browser_event(STUDENT, SESSION, kind, {})
    assert rt.pipeline_status()["violations_waiting"] == 3 and store.attempts == 1  # the rest waited behind the first
    store.down = 0
    rt.violation_queue.first_s = 0.0
    for item in rt.violation_queue.pending:
        item.next_mono = 0.0
    rt.step()
    assert [v.type for v in store.violations.values()] == ["TAB_SWITCH", "FULLSCREEN_EXIT", "TAB_SWITCH"]
    assert rt.pipeline_status()["violations_waiting"] == 0


def test_a_repeated_browser_event_id_is_taken_once(store, tmp_path):
    rt, _ = make_runtime(store, tmp_path, WARNING_COOLDOWN_S=0.0)
    cid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert len(rt.browser_event(STUDENT, SESSION, "TAB_SWITCH", {}, cid)) == 1
    assert rt.browser_event(STUDENT, SESSION, "TAB_SWITCH", {}, cid) is None
    assert len(store.violations) == 1


def test_the_status_says_degraded_with_the_share_analysed(store, tmp_path):
    """Under overload a student is analysed 1 frame in N: the status says so, with the results' age."""
    rt, _ = make_runtime(store, tmp_path, respond=result_for)
    clock = [1000.0]
    stream_status = lambda: rt._streams[STUDENT].status(0.0, clock[0], None,  # noqa: E731
                                                        {"received": received[0], "dropped": dropped[0]})
    feed(rt, 100.0)
    rt._streams[STUDENT].load_marks.clear()  # the step's own status used the real clock
    received, dropped = [1], [0]
    assert stream_status()["load"]["degraded"] is False  # too early to say
    dropped[0] += 8  # 4 of 12 frames analysed over 4 s: 8 replaced before a worker took them
    received[0] = 12
    clock[0] += 4.0
    load = stream_status()["load"]
    assert load == {"analysed_share": 0.27, "one_in": 3.7, "result_age_p95_s": load["result_age_p95_s"], "degraded": True,
                    "intervals_x": 3.67}  # the detector's and identity's clocks slowed as much
    assert load["result_age_p95_s"] is not None and load["result_age_p95_s"] >= 0
    stream = rt._streams[STUDENT]
    # Slowed clocks: the steady detector interval and the identity interval are 3.7 times longer.
    t = stream.cadence.last_run_t
    steady = stream.rules.config.DETECTOR_STEADY_INTERVAL_S
    assert stream.cadence.due(t + steady * 1.01, stream.stretch) is None
    assert stream.cadence.due(t + steady * 3.8, stream.stretch) == "steady"
    received[0] = 30  # catching up: none dropped any more
    clock[0] += 11.0
    load = stream_status()["load"]
    assert load["degraded"] is False and load["intervals_x"] == pytest.approx(3.57)  # shrinks back slowly
    assert stream_status()["load"]["intervals_x"] == pytest.approx(3.57)  # a second read the same second: no step
    for _ in range(40):
        received[0] += 2
        clock[0] += 1.0
        load = stream_status()["load"]
    assert load["intervals_x"] == 1.0


def test_a_frame_in_flight_is_not_counted_as_lost(store, tmp_path):
    """Frames received but not yet analysed (waiting in the slot or with a worker) are not a degraded
    stream: only frames replaced before a worker took them are. A status read while every frame is one
    step behind its result stays at a full share, and the detector's clock is not stretched."""
    rt, _ = make_runtime(store, tmp_path, respond=result_for)
    feed(rt, 100.0)
    stream = rt._streams[STUDENT]
    stream.load_marks.clear()
    base = stream.processed
    stream.load(2000.0, base, 0)  # read when every frame received had its result
    stream.processed = base + 5   # 3 s later: six more frames arrived at 2 frames/s, the sixth in flight
    load = stream.load(2003.0, base + 6, 0)
    assert load["analysed_share"] == 1.0 and load["degraded"] is False and stream.stretch == 1.0
    load = stream.load(2004.0, base + 8, 2)  # two replaced before a worker took them: those are lost
    assert load["analysed_share"] == 0.75 and load["degraded"] is True and stream.stretch > 1.0


def test_identity_is_checked_again_when_the_face_changes_not_only_on_the_clock(store, tmp_path):
    """Identity every IDENTITY_CHECK_EVERY_S while the same face stays; a face that comes back or
    jumps is checked on the next frame (at most once in IDENTITY_RECHECK_MIN_S); a frame whose face
    stage found no face costs no identity model run and the check waits for a face."""
    from face_pipeline import FaceObservation
    from proctor.live.streams import IDENTITY_RECHECK_MIN_S

    store.add_session(embedding=b"\0" * 512)
    here, there = (200, 100, 400, 340), (20, 10, 140, 150)
    scene = {}  # frame time -> the main face box (None: no face)

    def respond(job):
        box = scene[job.frame_ts]
        face = FaceObservation(face_detected=box is not None, face_count=int(box is not None), box=box)
        checked = job.identity_embedding is not None
        return FrameResult(job.student_id, job.session_id, job.seq, job.frame_ts, job.received_mono, worker_id=0,
                           face=face, frame_mean=90.0, frame_diff=3.0, identity_ran=checked,
                           identity_face_found=checked and box is not None,
                           identity_match=True if checked and box is not None else None)

    rt, _ = make_runtime(store, tmp_path, respond=respond, IDENTITY_CHECK_EVERY_S=10.0)
    t0 = 1000.0
    # 0-3.5 s the student; 4-5 s nobody; 5.5-8 s the student again; 8.5 s the face jumps elsewhere;
    # 10-13.5 s it flickers (lost on every other frame); then 16 s of a steady face.
    plan = [here] * 8 + [None] * 3 + [here] * 6 + [there] * 3 + [None, there] * 4 + [there] * 32
    for i, box in enumerate(plan):
        scene[t0 + i * 0.5] = box
        feed(rt, t0 + i * 0.5)
    jobs = [(round(j.frame_ts - t0, 1), scene[j.frame_ts] is not None) for j in rt.pool.jobs if j.identity_embedding is not None]
    checked = [t for t, face in jobs if face]
    # The results come back at once here, so a change seen in frame k's result is checked in frame k+1.
    assert checked[:3] == [0.0, 6.0, 9.0], jobs       # the start, the face back, the jump
    assert all(b - a >= IDENTITY_RECHECK_MIN_S for a, b in zip(checked, checked[1:])), jobs
    assert 2 <= len([t for t in checked if 10.0 <= t < 14.0]) <= 2, jobs  # the flicker: one in 2 s
    assert checked[-1] >= 14.0 and checked[-1] - checked[-2] == pytest.approx(10.0), jobs  # then the clock


def test_a_verified_unbroken_face_is_checked_less_often_and_any_break_or_mismatch_restores_the_clock(store, tmp_path):
    """Two matching checks in a row of one face tracked without a break (IDENTITY_VERIFIED_AFTER_CHECKS)
    stretch the routine check from IDENTITY_CHECK_EVERY_S (10 s) to IDENTITY_VERIFIED_EVERY_S (30 s).
    The main face jumping (someone else sat down) checks on the next frame and starts the streak over;
    a mismatch is checked again within IDENTITY_RECHECK_MIN_S (2 s) until IDENTITY_MISMATCH_MIN_CHECKS (2)
    agree, then keeps the 10 s clock for as long as it lasts."""
    from face_pipeline import FaceObservation

    store.add_session(embedding=b"\0" * 512)
    here, there = (200, 100, 400, 340), (20, 10, 140, 150)
    scene = {}  # frame time -> (main face box, does it match)

    def respond(job):
        box, match = scene[job.frame_ts]
        checked = job.identity_embedding is not None
        return FrameResult(job.student_id, job.session_id, job.seq, job.frame_ts, job.received_mono, worker_id=0,
                           face=FaceObservation(face_detected=True, face_count=1, box=box), frame_mean=90.0,
                           frame_diff=3.0, identity_ran=checked, identity_face_found=checked,
                           identity_match=match if checked else None)

    rt, _ = make_runtime(store, tmp_path, respond=respond)
    t0 = 5000.0
    # 0-79.5 s the student (matches); 80-129.5 s someone else in another place (never matches)
    plan = [(here, True)] * 160 + [(there, False)] * 100
    for i, step in enumerate(plan):
        scene[t0 + i * 0.5] = step
        feed(rt, t0 + i * 0.5)
    checked = [round(j.frame_ts - t0, 1) for j in rt.pool.jobs if j.identity_embedding is not None]
    assert checked[:4] == [0.0, 10.0, 40.0, 70.0], checked      # 10 s until verified twice, then 30 s
    assert checked[4] == 80.5, checked                          # the jump: checked on the next frame
    assert checked[5] == 82.5, checked                          # a mismatch: a second check to agree
    assert checked[6:] == [92.5, 102.5, 112.5, 122.5], checked  # agreed mismatches: the 10 s clock
    assert rt.status(STUDENT)["identity"]["match"] is False


def test_pipeline_counters_say_how_often_the_costly_models_ran():
    """The load bench reads these: detector and identity-model runs and the workers' CPU over all jobs."""
    from proctor.live.stats import PipelineStats

    stats = PipelineStats()
    stats.result(0.1, {"face": 9.0, "cpu": 12.0}, 1.0)
    stats.result(0.2, {"face": 9.0, "detector": 80.0, "cpu": 95.5}, 1.5)
    stats.result(0.2, {"face": 9.0, "identity": 120.0, "cpu": 131.0}, 2.0)
    out = stats.as_dict(2.0)
    assert out["counters"]["processed"] == 3
    assert out["counters"]["detector_runs"] == 1 and out["counters"]["identity_runs"] == 1
    assert out["worker_cpu_ms"] == pytest.approx(238.5)


def test_the_verified_identity_interval_is_validated_against_the_routine_one():
    from config_vision import VisionConfigError, load_vision_config

    with pytest.raises(VisionConfigError, match="IDENTITY_VERIFIED_EVERY_S=5.0 must not be below IDENTITY_CHECK_EVERY_S=10.0"):
        load_vision_config(env={}, IDENTITY_VERIFIED_EVERY_S=5.0)
    with pytest.raises(VisionConfigError, match="IDENTITY_VERIFIED_AFTER_CHECKS"):
        load_vision_config(env={}, IDENTITY_VERIFIED_AFTER_CHECKS=-1)
    cfg = load_vision_config(env={}, IDENTITY_CHECK_EVERY_S=5.0, IDENTITY_VERIFIED_EVERY_S=5.0)
    assert cfg.IDENTITY_VERIFIED_EVERY_S == cfg.IDENTITY_CHECK_EVERY_S == 5.0


def test_a_view_is_drawn_outside_the_runtime_lock_and_off_the_event_loop(store, tmp_path, monkeypatch):
    """Decoding, drawing and encoding a view (5-10 ms) happen after the runtime's lock is let go, and
    under eventlet in its native thread pool (proctor/live/offload.py): the live grid's burst of
    thumbnails must not hold up the loop or the frame acks."""
    import threading

    from proctor.live import offload, views

    rt, _ = make_runtime(store, tmp_path, respond=result_for)
    feed(rt, 100.0)
    lock_free, real = [], views.draw_processed

    def spy(*args):
        got = []

        def try_lock():
            took = rt._lock.acquire(timeout=0.5)
            got.append(took)
            if took:
                rt._lock.release()

        other = threading.Thread(target=try_lock)
        other.start()
        other.join()
        lock_free.append(got[0])
        return real(*args)

    monkeypatch.setattr(views, "draw_processed", spy)
    view = rt.latest_view(STUDENT)
    assert view.kind == "processed" and view.jpeg.startswith(b"\xff\xd8") and lock_free == [True]
    assert rt.latest_view(STUDENT).jpeg is view.jpeg and lock_free == [True]  # cached: drawn once

    offloaded = []
    monkeypatch.setattr(offload, "green", lambda: True)
    monkeypatch.setattr(offload, "run_off_loop",
                        lambda fn, *a, timeout_s: offloaded.append(timeout_s) or fn(*a))
    feed(rt, 100.5)
    assert rt.latest_view(STUDENT).jpeg is not view.jpeg and offloaded == [views.DRAW_TIMEOUT_S]

    def too_slow(fn, *a, timeout_s):
        raise TimeoutError("slow")

    monkeypatch.setattr(offload, "run_off_loop", too_slow)
    feed(rt, 101.0)
    assert rt.latest_view(STUDENT).kind == "raw"  # given up: the newest raw frame instead, no error


def test_the_status_says_which_objects_the_exam_prohibits(store, tmp_path):
    """A person is context, never a prohibited object (the live card used to paint every honest
    student's "objects: person" red); a confirmed phone is prohibited; a mouse only in an exam that
    adds it to its banned classes (EXTRA_BANNED_CLASSES)."""
    mouse = Detection(64, "mouse", 0.8, (40, 400, 90, 440))

    def respond(job):
        return result_for(job, Detections((PERSON, PHONE, mouse), "unit", (640, 480)))

    times = [200.0 + i * 0.5 for i in range(4)]
    rt, _ = make_runtime(store, tmp_path, respond)
    for t in times:
        feed(rt, t)
    objects = {o["label"]: o["prohibited"] for o in rt.status(STUDENT)["objects"]}
    assert objects == {"person": False, "cell phone": True, "mouse": False} and rt.status(STUDENT)["persons"] == 1

    store.sessions[SESSION]["thresholds"] = '{"EXTRA_BANNED_CLASSES": "64"}'
    rt, _ = make_runtime(store, tmp_path, respond)
    for t in times:
        feed(rt, t)
    objects = {o["label"]: o["prohibited"] for o in rt.status(STUDENT)["objects"]}
    assert objects == {"person": False, "cell phone": True, "mouse": True}


def test_the_picture_names_the_rules_holding_now_and_no_stale_count(store, tmp_path):
    """The HUD's alert strip is the rules holding at that moment, by title; it empties when they end
    (it used to keep the last three warnings issued, and a warning count that was stale on every
    cached thumbnail). The phone is seen on runs 0-5, then gone."""
    from proctor.live.mjpeg import _hud_status, _status_alerts
    from proctor.live.views import active_alerts, hud_status

    respond, times = _phone_runs(range(6), frames=40)
    rt, _ = make_runtime(store, tmp_path, respond)
    for t in times[:8]:
        feed(rt, t)
    stream = rt._streams[STUDENT]
    assert "PROHIBITED_OBJECT" in rt.status(STUDENT)["active_rules"]
    assert active_alerts(stream) == ("Prohibited object",)
    assert _status_alerts(rt.status(STUDENT)) == ["Prohibited object"]  # the raw live view says the same
    assert "warnings" not in hud_status(stream) and "warnings" not in _hud_status(rt.status(STUDENT))
    for t in times[8:]:
        feed(rt, t)
    assert "PROHIBITED_OBJECT" not in rt.status(STUDENT)["active_rules"]
    assert active_alerts(stream) == () and _status_alerts(rt.status(STUDENT)) == []
    assert rt.status(STUDENT)["warnings"] == 1  # the card's count stays: only the picture forgets
