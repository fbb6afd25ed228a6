"""The students' CSV import runs as a background job: the request returns at once to a progress
page, bcrypt runs off the request's thread, per-row errors are reported, the import is audited."""
from __future__ import annotations

import re
import threading
import time

from tests.conftest import login, make_user
from tests.web.test_admin_students import audit_rows, get_student, post_csv


def follow_job(client, resp, timeout_s: float = 30.0) -> str:
    assert resp.status_code == 303, resp.status_code
    url = resp.headers["Location"]
    assert re.fullmatch(r"(http://localhost)?/admin/students/import/[0-9a-f]{32}", url), url
    deadline = time.monotonic() + timeout_s
    while True:
        page = client.get(url)
        assert page.status_code == 200
        text = page.get_data(as_text=True)
        if 'id="import-running"' not in text:
            return text
        # The page polls itself while the job runs (a script; a meta refresh only without scripts).
        assert "js/admin/import.js" in text and '<noscript><meta http-equiv="refresh"' in text
        assert time.monotonic() < deadline, "the import job did not finish"
        time.sleep(0.05)


def test_import_returns_at_once_and_hashes_off_the_request_thread(app, admin_client, monkeypatch):
    import bcrypt

    real = bcrypt.hashpw
    threads: list[str] = []

    def slow_hash(password, salt):
        threads.append(threading.current_thread().name)
        time.sleep(0.05)  # 40 rows: 2 s of hashing, as cost 12 would take ~16 s
        return real(password, salt)

    monkeypatch.setattr(bcrypt, "hashpw", slow_hash)
    rows = "".join(f"Student {i},s{i}@example.edu,pass word {i:03d}\n" for i in range(40))
    content = ("name,email,password\n" + rows + "Bad,not-an-email,whatever12\n").encode()
    here = threading.current_thread().name
    t0 = time.perf_counter()
    resp = post_csv(admin_client, content)
    took = time.perf_counter() - t0
    print(f"the import request returned in {took:.2f} s (hashing 40 rows takes 2 s)")
    page = follow_job(admin_client, resp)
    assert "Created: 40" in page and "Rejected: 1" in page and "valid address" in page
    assert len(threads) >= 40 and here not in threads
    assert get_student(app, "s39@example.edu") is not None
    assert login(app.test_client(), "s7@example.edu", "pass word 007").status_code == 302
    assert audit_rows(app, "student.import")[0][3]["created"] == 40


def test_job_page_belongs_to_its_admin(app, admin_client):
    resp = post_csv(admin_client, b"name,email\nAda,ada@example.edu\n")
    url = resp.headers["Location"]
    follow_job(admin_client, resp)
    make_user(app, "other-admin@example.edu", role="ADMIN", name="Other")
    other = app.test_client()
    login(other, "other-admin@example.edu")
    assert other.get(url).status_code == 404
    assert admin_client.get("/admin/students/import/" + "0" * 32).status_code == 404
