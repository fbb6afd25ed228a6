"""The account CLI: create-user and seed-demo make working accounts; nothing exists otherwise."""
from __future__ import annotations

import re

from sqlalchemy import func, select

from tests.conftest import login


def _count(app, model, *where):
    from proctor.extensions import db

    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


def test_no_account_exists_until_the_cli_makes_one(app):
    from proctor.models import User

    assert _count(app, User) == 0


def test_create_user_makes_a_working_admin(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-user", "--role", "ADMIN", "--email", "Head@School.edu",
                                 "--password", "long enough pw", "--name", "Head Teacher"])
    assert result.exit_code == 0, result.output
    assert "created ADMIN account head@school.edu" in result.output
    client = app.test_client()
    assert login(client, "head@school.edu", "long enough pw").headers["Location"].endswith("/admin/")


def test_create_user_refuses_bad_input_with_a_message(app):
    runner = app.test_cli_runner()
    base = ["create-user", "--role", "STUDENT", "--email", "s@example.edu", "--name", "S"]
    assert runner.invoke(args=base + ["--password", "long enough pw"]).exit_code == 0
    dup = runner.invoke(args=base + ["--password", "long enough pw"])
    assert dup.exit_code != 0 and "already exists" in dup.output
    short = runner.invoke(args=["create-user", "--role", "STUDENT", "--email", "t@example.edu", "--name", "T", "--password", "short"])
    assert short.exit_code != 0 and "8 to 128" in short.output
    role = runner.invoke(args=["create-user", "--role", "ROOT", "--email", "u@example.edu", "--name", "U", "--password", "long enough pw"])
    assert role.exit_code != 0 and "ROOT" in role.output


def test_seed_demo_prints_working_credentials_and_is_idempotent(app):
    from proctor.models import Exam, Question, User

    runner = app.test_cli_runner()
    result = runner.invoke(args=["seed-demo"])
    assert result.exit_code == 0, result.output
    creds = dict(re.findall(r"(\S+@example\.edu)\s+password: (\S+)", result.output))
    assert set(creds) == {"admin@example.edu", "student1@example.edu", "student2@example.edu"}
    assert _count(app, User, User.role == "ADMIN") == 1
    assert _count(app, User, User.role == "STUDENT") == 2
    assert _count(app, Exam, Exam.is_published.is_(True)) == 1
    assert _count(app, Question) >= 10
    for email, password in creds.items():
        assert login(app.test_client(), email, password).status_code == 302, email
    again = runner.invoke(args=["seed-demo"])
    assert again.exit_code == 0 and "exists" in again.output
    assert _count(app, User) == 3 and _count(app, Exam) == 1
