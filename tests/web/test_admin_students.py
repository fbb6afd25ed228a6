"""Admin student management: list/search/paginate, create, edit, deactivate, delete (cascade), CSV import, face image."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import TEST_PASSWORD, csrf_token, login, make_user
from tests.web.test_admin_results import TESTDATA, audit_rows, seed_session


def count_students(app):
    from proctor.extensions import db
    from proctor.models import User

    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User).where(User.role == "STUDENT"))


def get_student(app, email):
    from proctor.accounts import find_by_email

    with app.app_context():
        s = find_by_email(email)
        return None if s is None else {"id": s.id, "name": s.name, "active": s.is_active_account, "hash": s.password_hash}


def test_list_search_and_paginate(app, admin_client):
    from proctor.extensions import db
    from proctor.models import User

    with app.app_context():  # 30 rows straight in the table (bcrypt per account would only slow the test)
        db.session.add_all([User(name=f"Pupil {i:02d}", email=f"pupil{i:02d}@example.edu", password_hash="x") for i in range(30)])
        db.session.add(User(name="Zed Searchable", email="zed@other.org", password_hash="x"))
        db.session.commit()
    page1 = admin_client.get("/admin/students").get_data(as_text=True)
    assert "(31)" in page1 and "Page 1 of 2" in page1 and "Pupil 00" in page1 and "Zed Searchable" not in page1
    page2 = admin_client.get("/admin/students?page=2").get_data(as_text=True)
    assert "Zed Searchable" in page2 and "Pupil 00" not in page2
    found = admin_client.get("/admin/students?q=other.org").get_data(as_text=True)
    assert "Zed Searchable" in found and "Pupil" not in found
    # LIKE metacharacters are literal
    assert "No students match" in admin_client.get("/admin/students?q=%25").get_data(as_text=True)
    assert admin_client.get("/admin/students?page=abc&q=" + "x" * 500).status_code == 200


def test_create_student_with_csrf_and_audit(app, admin_client):
    token = csrf_token(admin_client, "/admin/students/new")
    resp = admin_client.post("/admin/students/new", data={"csrf_token": token, "name": "New Person", "email": "New@Example.edu",
                                                          "password": "a good password", "role": "STUDENT"})
    assert resp.status_code == 302
    s = get_student(app, "new@example.edu")
    assert s and s["name"] == "New Person" and s["active"]
    assert audit_rows(app, "student.create")[0][2] == s["id"]
    # the new account can sign in
    c = app.test_client()
    assert login(c, "new@example.edu", "a good password").status_code == 302


@pytest.mark.parametrize("fields, message", [
    ({"name": ""}, "Name is required"),
    ({"name": "n" * 101}, "at most 100"),
    ({"email": "nope"}, "valid address"),
    ({"password": "short"}, "8 to 128"),
    ({"role": "ROOT"}, "STUDENT or ADMIN"),
    ({"name": "bad\x00name"}, "control characters"),
])
def test_create_student_bad_input(app, admin_client, fields, message):
    token = csrf_token(admin_client, "/admin/students/new")
    data = {"csrf_token": token, "name": "Ok", "email": "ok@example.edu", "password": "long enough", **fields}
    resp = admin_client.post("/admin/students/new", data=data)
    assert resp.status_code == 400 and message in resp.get_data(as_text=True)
    assert count_students(app) == 0


def test_create_duplicate_and_without_csrf(app, admin_client):
    make_user(app, "dup@example.edu")
    token = csrf_token(admin_client, "/admin/students/new")
    resp = admin_client.post("/admin/students/new", data={"csrf_token": token, "name": "X", "email": "DUP@example.edu", "password": "long enough"})
    assert resp.status_code == 400 and "already exists" in resp.get_data(as_text=True)
    resp = admin_client.post("/admin/students/new", data={"name": "X", "email": "x@example.edu", "password": "long enough"})
    assert resp.status_code == 400 and get_student(app, "x@example.edu") is None


def test_edit_student_and_password(app, admin_client):
    sid = make_user(app, "edit@example.edu", name="Before")
    old_hash = get_student(app, "edit@example.edu")["hash"]
    token = csrf_token(admin_client, f"/admin/students/{sid}/edit")
    resp = admin_client.post(f"/admin/students/{sid}/edit", data={"csrf_token": token, "name": "After", "email": "edit@example.edu",
                                                                  "active": "1", "password": ""})
    assert resp.status_code == 302
    s = get_student(app, "edit@example.edu")
    assert s["name"] == "After" and s["hash"] == old_hash  # empty password keeps the old one
    admin_client.post(f"/admin/students/{sid}/edit", data={"csrf_token": token, "name": "After", "email": "edit@example.edu",
                                                           "active": "1", "password": "brand new password"})
    assert get_student(app, "edit@example.edu")["hash"] != old_hash
    assert login(app.test_client(), "edit@example.edu", "brand new password").status_code == 302
    assert [r[3]["fields"] for r in audit_rows(app, "student.update")] == [["name"], ["password"]]
    # taking another account's email is refused
    make_user(app, "taken@example.edu")
    resp = admin_client.post(f"/admin/students/{sid}/edit", data={"csrf_token": token, "name": "After", "email": "taken@example.edu", "active": "1"})
    assert resp.status_code == 400 and "already exists" in resp.get_data(as_text=True)
    # ... and so is its accented twin, which MariaDB's collation would call equal (hardening)
    resp = admin_client.post(f"/admin/students/{sid}/edit", data={"csrf_token": token, "name": "After", "email": "tákén@example.edu", "active": "1"})
    assert resp.status_code == 400 and "already exists" in resp.get_data(as_text=True)
    assert get_student(app, "edit@example.edu") is not None
    assert admin_client.get("/admin/students/999999/edit").status_code == 404


def test_deactivate_blocks_login_and_reactivate(app, admin_client):
    sid = make_user(app, "deact@example.edu")
    token = csrf_token(admin_client, "/admin/students")
    assert admin_client.post(f"/admin/students/{sid}/active", data={"csrf_token": token, "active": "0"}).status_code == 302
    assert get_student(app, "deact@example.edu")["active"] is False
    resp = login(app.test_client(), "deact@example.edu", TEST_PASSWORD)
    assert resp.status_code == 200 and "deactivated" in resp.get_data(as_text=True)
    admin_client.post(f"/admin/students/{sid}/active", data={"csrf_token": token, "active": "1"})
    assert get_student(app, "deact@example.edu")["active"] is True
    assert [r[2] for r in audit_rows(app, "student.deactivate")] == [sid]
    # an admin cannot lock themselves out
    me = get_student(app, "admin@example.edu")["id"]
    admin_client.post(f"/admin/students/{me}/active", data={"csrf_token": token, "active": "0"})
    assert get_student(app, "admin@example.edu")["active"] is True


def test_delete_needs_confirmation_and_cascades(app, admin_client):
    s = seed_session(app)
    from proctor.extensions import db
    from proctor.models import Answer, ExamResult, ExamSession, Exam, Profile, Violation

    with app.app_context():
        db.session.add(Profile(student_id=s["student_id"], image_path="faces/x.jpg"))
        db.session.commit()
    page = admin_client.get(f"/admin/students/{s['student_id']}/delete")
    assert page.status_code == 200 and "cannot be undone" in page.get_data(as_text=True)
    token = csrf_token(admin_client, f"/admin/students/{s['student_id']}/delete")
    resp = admin_client.post(f"/admin/students/{s['student_id']}/delete", data={"csrf_token": token, "confirm_email": "wrong@example.edu"})
    assert resp.status_code == 400 and get_student(app, "taker@example.edu") is not None
    resp = admin_client.post(f"/admin/students/{s['student_id']}/delete", data={"csrf_token": token, "confirm_email": "TAKER@example.edu"})
    assert resp.status_code == 302 and get_student(app, "taker@example.edu") is None
    with app.app_context():
        for model in (ExamSession, ExamResult, Violation, Profile, Answer):
            assert db.session.query(model).count() == 0, model.__name__
        assert db.session.get(Exam, s["exam_id"]) is not None  # the exam stays
    row = audit_rows(app, "student.delete")[0]
    assert row[2] == s["student_id"] and row[3]["email"] == "taker@example.edu"


def test_cannot_delete_self(app, admin_client):
    me = get_student(app, "admin@example.edu")["id"]
    token = csrf_token(admin_client, "/admin/students")
    admin_client.post(f"/admin/students/{me}/delete", data={"csrf_token": token, "confirm_email": "admin@example.edu"})
    assert get_student(app, "admin@example.edu") is not None


def post_csv(client, content: bytes, filename="students.csv"):
    token = csrf_token(client, "/admin/students/import")
    return client.post("/admin/students/import", data={"csrf_token": token, "file": (io.BytesIO(content), filename)},
                       content_type="multipart/form-data")


def test_csv_import_good_and_bad_rows(app, admin_client):
    make_user(app, "exists@example.edu")
    content = ("name,email,password\n"
               "Alice A,alice@example.edu,alice password\n"
               "Bob B,bob@example.edu,\n"
               ",noname@example.edu,whatever12\n"
               "Carol,not-an-email,whatever12\n"
               "Dup,exists@example.edu,whatever12\n"
               "Eve,eve@example.edu,short\n"
               "Alice again,ALICE@example.edu,whatever12\n"
               "Too,many@example.edu,cells123,extra\n"
               "\"<b>O'Brien; DROP TABLE students;--</b>\",obrien@example.edu,obrien password\n").encode()
    from tests.web.test_admin_import_job import follow_job

    page = follow_job(admin_client, post_csv(admin_client, content))
    assert "Created: 3" in page and "Rejected: 6" in page
    for line, reason in [(4, "Name is required"), (5, "valid address"), (6, "already exists"), (7, "8 to 128"),
                         (8, "appears twice"), (9, "too many cells")]:
        assert f"<td>{line}</td>" in page and reason in page, (line, reason)
    assert get_student(app, "alice@example.edu") and get_student(app, "bob@example.edu")
    assert get_student(app, "obrien@example.edu")["name"] == "<b>O'Brien; DROP TABLE students;--</b>"  # verbatim
    assert "&lt;b&gt;O&#39;Brien; DROP TABLE students;--&lt;/b&gt;" in page  # escaped
    # Bob got a generated password, shown once, that works
    import re

    generated = re.search(r"bob@example.edu</td><td><code>([^<]+)</code>", page).group(1)
    assert login(app.test_client(), "bob@example.edu", generated).status_code == 302
    assert audit_rows(app, "student.import")[0][3] == {"created": 3, "failed": 6, "rows": 9, "stopped": False}


@pytest.mark.parametrize("content, message", [
    (b"email,name,role\nx@example.edu,X,ADMIN\n", "unknown column(s): role"),
    (b"fullname,mail\nX,x@example.edu\n", "missing column(s): name, email"),
    (b"name,email\n", "no rows"),
    (b"", "empty"),
    (b"name,email\n\xff\xfe bad bytes\n", "not UTF-8"),
    (b"name,email\n" + b"P,p@example.edu\n" * 501, "Too many rows"),
    (b"name,email\n" + b"x" * (257 * 1024), "larger than 256 KB"),
])
def test_csv_import_rejects_bad_files(app, admin_client, content, message):
    resp = post_csv(admin_client, content)
    assert resp.status_code == 400 and message in resp.get_data(as_text=True)
    assert count_students(app) == 0


def test_csv_import_without_file(app, admin_client):
    token = csrf_token(admin_client, "/admin/students/import")
    resp = admin_client.post("/admin/students/import", data={"csrf_token": token})
    assert resp.status_code == 400 and "Choose a file" in resp.get_data(as_text=True)


def test_face_image_route_is_admin_only_and_path_safe(app, admin_client, student_client):
    from proctor.extensions import db
    from proctor.models import Profile

    sid = make_user(app, "face@example.edu")
    other = make_user(app, "face2@example.edu")
    data_dir = Path(app.config["PROCTOR_DATA_DIR"])
    (data_dir / "faces").mkdir(parents=True, exist_ok=True)
    shutil.copy(TESTDATA / "identity" / "obama.jpg", data_dir / "faces" / "face.jpg")
    outside = data_dir.parent / "secret.jpg"
    shutil.copy(TESTDATA / "identity" / "biden.jpg", outside)
    with app.app_context():
        db.session.add_all([Profile(student_id=sid, image_path="faces/face.jpg", quality=json.dumps({"brightness": 120})),
                            Profile(student_id=other, image_path="../secret.jpg")])
        db.session.commit()
    resp = admin_client.get(f"/admin/students/{sid}/face")
    assert resp.status_code == 200 and resp.mimetype == "image/jpeg"
    assert resp.data == (TESTDATA / "identity" / "obama.jpg").read_bytes()
    assert admin_client.get(f"/admin/students/{other}/face").status_code == 404  # outside the data folder
    assert student_client.get(f"/admin/students/{sid}/face").status_code == 403
    page = admin_client.get(f"/admin/students/{sid}/edit").get_data(as_text=True)
    assert f"/admin/students/{sid}/face" in page and "brightness" in page
    listing = admin_client.get("/admin/students").get_data(as_text=True)
    assert "image only" in listing  # a profile without an embedding
