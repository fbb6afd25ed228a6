"""Fuzz every JSON route and every upload route in the URL map with mutated payloads.

A fixed seed makes the run repeatable. Each route is called as the kind of account it is for
(its @access level), with a valid CSRF token, and gets payloads mutated from a valid one: huge,
negative, float, bool, null and nested ids, wrong types, giant strings, deep nesting, invalid
UTF-8, wrong content types, truncated images and decompression bombs (tests/bombs.py). No answer
may be a 5xx, and every error from a JSON blueprint must be {"error", "code"} JSON.
"""
from __future__ import annotations

import base64
import inspect
import io
import json
import random
import re
import time
from collections import Counter

import pytest

from tests.conftest import TEST_PASSWORD, _test_config, csrf_token, login, make_user
from tests.vision.conftest import TESTDATA
from tests.web.test_exam_flow import make_exam

pytestmark = pytest.mark.timeout(300)

SEED = 20261118
PER_ROUTE = 150
PER_ROUTE_SLOW = 50  # face registration runs real face inference on a good photo
ARG = re.compile(r"<(?:(\w+):)?(\w+)>")
# Upload routes and their file field (None: the raw body is the upload). A test below checks this
# list against the views' source, so a new upload route cannot be missed.
UPLOADS = {"student.face": "photo", "admin.students_import": "file", "admin.questions_import": "file",
           "exam_api.audio_chunk": "chunk", "exam_api.upload_test": None, "exam_api.upload_room_scan": "clip",
           "exam_api.screenshot": None}
HUGE_INTS = [0, -1, 2**31 - 1, 2**31, 2**53 + 1, 2**63, 2**64 + 1, -2**63 - 1, 10**30, 10**400]


@pytest.fixture
def fuzz_app(database_url, tmp_path):
    from proctor import create_app
    from proctor.extensions import db

    config = _test_config(database_url, tmp_path / "instance")
    from proctor.settings import SETTINGS

    # Rates high enough never to hide a route behind its 429 (RATELIMIT_ENABLED=False would switch
    # off the shared limiter for the apps of later tests too).
    config.update({s.key: "100000 per second" for s in SETTINGS if s.kind == "rate" and s.key})
    config.update(PROCTOR_LIVE_ENABLED=False, PROCTOR_EXAM_MAX_ATTEMPTS=100)
    app = create_app(config)
    from tests.conftest import _empty_all_tables

    with app.app_context():
        _empty_all_tables(db)
    with app.app_context():
        from proctor.extensions import limiter

        limiter.reset()
    yield app
    from proctor.live import get_runtime

    get_runtime(app).stop()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _image(name="a_1_webcam_woman_T1.jpg", max_side=320) -> bytes:
    import cv2

    from tests.photos import cover

    img = cover(cv2.imread(str(TESTDATA / name), cv2.IMREAD_COLOR), (max_side, max_side * 3 // 4))
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


class Fuzzer:
    def __init__(self, rng: random.Random, jpeg: bytes, bombs: dict[str, bytes]):
        self.rng, self.jpeg, self.bombs = rng, jpeg, bombs

    def data_url(self) -> str:
        r = self.rng
        choice = r.randrange(8)
        if choice == 0:
            return "data:image/jpeg;base64," + base64.b64encode(self.jpeg).decode()
        if choice == 1:
            return "data:image/jpeg;base64," + base64.b64encode(self.jpeg[: r.randrange(2, len(self.jpeg))]).decode()
        if choice == 2:
            name = r.choice(sorted(self.bombs))
            return f"data:image/{name.split('_')[0]};base64," + base64.b64encode(self.bombs[name]).decode()
        if choice == 3:
            return "data:image/gif;base64," + base64.b64encode(self.jpeg).decode()
        if choice == 4:
            return "data:image/png;base64,!!!not base64!!!"
        if choice == 5:
            return base64.b64encode(bytes(r.randrange(256) for _ in range(r.randrange(1, 300)))).decode()
        if choice == 6:
            raw = bytearray(self.jpeg)
            for _ in range(20):
                raw[r.randrange(len(raw))] = r.randrange(256)
            return "data:image/jpeg;base64," + base64.b64encode(bytes(raw)).decode()
        return "data:image/jpeg;base64," + "A" * r.choice([0, 1, 3, 5])

    def value(self, depth: int = 0):
        r = self.rng
        kind = r.randrange(14)
        if kind == 0:
            return r.choice(HUGE_INTS)
        if kind == 1:
            return r.choice([0.5, -0.0, 1e308, -1e308, 3.14, float("nan"), float("inf")])
        if kind == 2:
            return r.choice([True, False, None])
        if kind == 3:
            return r.choice(["", "0", "1", "-1", "1e3", "\u00b2", "\u0661", "\x00", "\ud800", "null", "true"])
        if kind == 4:
            return "x" * r.choice([256, 4096, 70_000])
        if kind == 5 and depth < 3:
            return [self.value(depth + 1) for _ in range(r.randrange(4))]
        if kind == 6 and depth < 3:
            return {r.choice(["a", "id", "level", "duration_ms", "reason"]): self.value(depth + 1) for _ in range(r.randrange(3))}
        if kind == 7:
            return self.data_url()
        if kind == 8:
            return r.choice(["TAB_SWITCH", "VOICE_DETECTED", "CAMERA_OFF", "FULLSCREEN_EXIT", "NO_FACE", "<script>"])
        if kind == 9:
            return "".join(chr(r.randrange(0x20, 0x2FFF)) for _ in range(r.randrange(1, 40)))
        if kind == 10:
            return nest(r.randrange(50, 200))
        return r.randrange(-5, 50)

    def json_body(self, base: dict):
        """(bytes, content type) mutated from a valid body."""
        r = self.rng
        kind = r.randrange(12)
        if kind == 0:
            return b"\xff\xfe{\x00\xc3(" + bytes(r.randrange(256) for _ in range(20)), "application/json"
        if kind == 1:
            return ("[" * 2000 + "]" * 2000).encode(), "application/json"
        if kind == 2:
            text = json.dumps(base)
            return text[: r.randrange(len(text) + 1)].encode(), "application/json"
        if kind == 3:
            return json.dumps(base).encode(), r.choice(["text/plain", "application/x-www-form-urlencoded", "", "application/jsonx"])
        if kind == 4:
            return json.dumps(r.choice([[base], "text", 5, None, True])).encode(), "application/json"
        if kind == 5:
            return ('{"image": "' + "A" * (3 * 1024 * 1024) + '"}').encode(), "application/json"
        body = dict(base)
        for _ in range(r.randrange(1, 4)):
            key = r.choice(list(body) + ["extra", "session_id", "student_id", "id"]) if body else "x"
            action = r.randrange(4)
            if action == 0 and key in body:
                del body[key]
            else:
                body[key] = self.value()
        return json.dumps(body, allow_nan=True).encode(), "application/json"

    def path(self, rule: str, ids: dict) -> str:
        def fill(match):
            conv, name = match.group(1), match.group(2)
            if conv == "int":
                pick = self.rng.randrange(4)
                if pick < 2 and name in ids:
                    return str(ids[name])
                return str(self.rng.choice([v for v in HUGE_INTS if v >= 0][:-1]))  # 10**400 would be a 404 anyway
            return self.rng.choice(["snapshot", "clip", "x" * 300, "%00", "..%2F..", "abc"])

        return ARG.sub(fill, rule)

    def upload(self, field: str, route: str):
        """(multipart data dict) with a mutated file and fields."""
        r = self.rng
        kind = r.randrange(8)
        if route.endswith(("audio_chunk", "room_scan")):
            good = b"\x1a\x45\xdf\xa3" + bytes(r.randrange(256) for _ in range(200))
        elif route.endswith("import"):
            good = "name,email,password\nAda L,ada{}@example.edu,correct horse\n".format(r.randrange(10**6)).encode()
        else:
            good = self.jpeg
        content = [good, good[: r.randrange(len(good))], b"", bytes(r.randrange(256) for _ in range(500)),
                   self.bombs[r.choice(sorted(self.bombs))], b"\xff\xfe\x00bad utf8\n" * 10,
                   ("name,email\n" + "\u0000,\ud7ff@x\n" * 50).encode("utf-8", "surrogatepass"),
                   b"text,option_1,option_2,correct,points\nQ,a,b,99999999999999999999999,-5\n"][kind]
        mime = r.choice(["image/jpeg", "image/png", "image/webp", "audio/webm", "audio/ogg", "text/csv", "", "application/x-evil", "video/webm"])
        data = {field: (io.BytesIO(content), r.choice(["f.jpg", "f.csv", "", "../../etc/passwd", "x" * 300]), mime)}
        for name in ("session_id", "seq", "started_ms", "duration_ms"):
            if r.random() < 0.8:
                v = self.value()
                data[name] = as_text(v)
        return data


def as_text(value) -> str:
    """A fuzz value as form or query text (a URL or form field cannot carry a lone surrogate)."""
    text = value if isinstance(value, str) else json.dumps(value, allow_nan=True)
    return text.encode("utf-8", "replace").decode()


def nest(depth: int):
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def _bases(ids: dict, jpeg_url: str) -> dict:
    return {
        "exam_api.system_check": {"camera": True, "microphone": True, "browser": True, "upload": True, "upload_kbps": 500},
        "exam_api.identity_frame": {"image": jpeg_url, "ts": 0, "restart": False},
        "exam_api.save_answer": {"question_id": ids["question_id"], "selected": 0, "flagged": False},
        "api.student_frame": {"image": jpeg_url, "ts": 1},
        "api.student_event": {"type": "TAB_SWITCH", "details": {"duration_ms": 10}},
        "api.terminate_session": {"reason": "fuzz"},
        "api.set_auto_terminate": {"enabled": True},
        "api.set_rule": {"rule": "NO_FACE", "enabled": False},
    }


def test_upload_list_matches_the_views(fuzz_app):
    found = set()
    for endpoint, view in fuzz_app.view_functions.items():
        try:
            source = inspect.getsource(view)
        except (OSError, TypeError):
            continue
        if any(reader in source for reader in ("request.files", "read_upload(", "request.get_data(cache=False)",
                                               "_read_body(", "read_file_field(")):
            found.add(endpoint)
    assert found == set(UPLOADS)


def test_fuzz_json_and_upload_routes(fuzz_app, tmp_path_factory):
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    app = fuzz_app
    bomb_dir = tmp_path_factory.mktemp("fuzz-bombs")
    subprocess.run([sys.executable, "-m", "tests.bombs", str(TESTDATA), str(bomb_dir)], cwd=REPO_ROOT, check=True,
                   capture_output=True, timeout=120)
    bombs = {p.name: p.read_bytes() for p in bomb_dir.iterdir()}
    jpeg = _image()
    rng = random.Random(SEED)
    fz = Fuzzer(rng, jpeg, bombs)

    student_id = make_user(app, "student@example.edu")
    admin_id = make_user(app, "admin@example.edu", role="ADMIN", name="Admin")
    exam_id = make_exam(app)
    clients = {"STUDENT": app.test_client(), "ADMIN": app.test_client(), "PUBLIC": app.test_client()}
    assert login(clients["STUDENT"], "student@example.edu", TEST_PASSWORD).status_code == 302
    assert login(clients["ADMIN"], "admin@example.edu", TEST_PASSWORD).status_code == 302
    clients["LOGIN"] = clients["STUDENT"]
    tokens = {"STUDENT": csrf_token(clients["STUDENT"], "/student/"), "ADMIN": csrf_token(clients["ADMIN"], "/admin/"),
              "PUBLIC": csrf_token(clients["PUBLIC"], "/login")}
    tokens["LOGIN"] = tokens["STUDENT"]

    from proctor import exam_service as svc
    from proctor.extensions import db
    from proctor.models import Exam, SessionStatus

    def session_ids() -> dict:
        """A session in progress (a new one when the fuzz ended the last)."""
        with app.app_context():
            sess = svc.active_session(student_id)
            if sess is None or sess.status != SessionStatus.IN_PROGRESS.value:
                sess = svc.start_session(student_id, exam_id)
            qid = db.session.get(Exam, exam_id).questions[0].id
            return {"exam_id": exam_id, "session_id": sess.id, "student_id": student_id, "question_id": qid,
                    "violation_id": 1, "recording_id": 1}

    jpeg_url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    counts: Counter = Counter()
    statuses: Counter = Counter()
    failures = []
    t0 = time.perf_counter()
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        bp_name = rule.endpoint.split(".")[0]
        json_bp = bool(getattr(app.blueprints.get(bp_name), "json_errors", False))
        if not json_bp and rule.endpoint not in UPLOADS:
            continue
        level = getattr(app.view_functions[rule.endpoint], "access_level", "public").upper()
        client, token = clients[level], tokens[level]
        methods = sorted(rule.methods - {"HEAD", "OPTIONS"})
        n = PER_ROUTE_SLOW if rule.endpoint == "student.face" else PER_ROUTE
        ids = session_ids()
        for i in range(n):
            if i % 25 == 0:
                ids = session_ids()
            method = rng.choice(methods)
            url = fz.path(rule.rule, ids)
            headers = {"X-CSRFToken": token}
            if method == "GET":
                resp = client.get(url, query_string={"page": as_text(fz.value()), "q": as_text(fz.value())} if rng.random() < 0.5 else None)
            elif rule.endpoint in UPLOADS and UPLOADS[rule.endpoint] and rng.random() < 0.85:
                data = fz.upload(UPLOADS[rule.endpoint], rule.endpoint)
                data["csrf_token"] = token
                resp = client.post(url, data=data, content_type="multipart/form-data", headers=headers)
            elif rule.endpoint == "exam_api.upload_test":
                size = rng.choice([0, 10, 2 * 1024 * 1024 + 1, 100_000])
                resp = client.post(url, data=bytes(size), content_type=rng.choice(["application/octet-stream", ""]),
                                   headers=headers)
            elif rule.endpoint == "exam_api.screenshot" and rng.random() < 0.85:  # the JPEG itself is the body
                body = rng.choice([jpeg, jpeg[:len(jpeg) // 2], b"", rng.randbytes(rng.randint(1, 4096)),
                                   *bombs.values()])
                resp = client.post(url, data=body, content_type=rng.choice(["image/jpeg", "image/png", ""]),
                                   headers=headers)
            else:
                body, ctype = fz.json_body(_bases(ids, jpeg_url).get(rule.endpoint, {}))
                resp = client.post(url, data=body, content_type=ctype, headers=headers)
            counts[rule.rule] += 1
            statuses[resp.status_code] += 1
            problem = None
            if resp.status_code >= 500:
                problem = "5xx"
            elif json_bp and resp.status_code >= 400:
                payload = resp.get_json(silent=True)
                if not isinstance(payload, dict) or not {"error", "code"} <= set(payload) or payload["code"] != resp.status_code:
                    problem = "not an {error, code} body"
            if problem:
                failures.append((problem, method, rule.rule, url[:120], resp.status_code, resp.get_data(as_text=True)[:200]))
    elapsed = time.perf_counter() - t0
    print(f"\nfuzz: {sum(counts.values())} requests in {elapsed:.1f} s (seed {SEED})")
    for route, count in sorted(counts.items()):
        print(f"  {count:5d}  {route}")
    print("  statuses:", dict(sorted(statuses.items())))
    assert not failures, (Counter((f[0], f[2]) for f in failures), failures[:10])
    assert sum(counts.values()) >= 2500
    assert len(counts) >= len(UPLOADS) + 15  # every JSON route and upload route was reached
