"""examproctordb.sql, the Alembic migrations and the models describe the same schema."""
from __future__ import annotations

import shutil
import subprocess

import pytest
from sqlalchemy import create_engine, inspect

from tests.conftest import MYSQL_SERVER_URL, REPO_ROOT

SQL_FILE = REPO_ROOT / "examproctordb.sql"


def test_sql_file_is_generated_from_the_models(app):
    from proctor.extensions import db
    from proctor.schema import mysql_ddl

    assert SQL_FILE.read_text(encoding="utf-8") == mysql_ddl(db.metadata), (
        "examproctordb.sql is out of date: run `flask --app app dump-schema` (or scripts/regen_schema.sh)"
    )


def test_migrations_match_the_models(app):
    """Alembic's own comparison finds nothing to change after the migrations ran."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from proctor.extensions import db

    with app.app_context(), db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(ctx, db.metadata)
    assert diffs == [], diffs


def _describe(url: str) -> dict:
    engine = create_engine(url)
    try:
        insp = inspect(engine)
        out = {}
        for table in sorted(insp.get_table_names()):
            if table == "alembic_version":
                continue
            cols = {c["name"]: (str(c["type"]).split(" COLLATE")[0], c["nullable"]) for c in insp.get_columns(table)}
            fks = sorted((tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]),
                          (fk.get("options") or {}).get("ondelete")) for fk in insp.get_foreign_keys(table))
            uniques = sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table))
            indexes = sorted((tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(table))
            out[table] = {"columns": cols, "fks": fks, "uniques": uniques, "indexes": indexes,
                          "pk": tuple(insp.get_pk_constraint(table)["constrained_columns"])}
        return out
    finally:
        engine.dispose()


@pytest.mark.mysql_only
def test_sql_file_imports_into_mariadb_and_equals_the_migrated_schema(mysql_server, database_url, app):
    if not database_url.startswith("mysql"):
        pytest.skip("compares against the migrated MariaDB database")
    client = shutil.which("mariadb") or shutil.which("mysql")
    if client is None:
        pytest.fail("the mariadb/mysql command-line client is needed (apt-get install mariadb-client)")
    conn, new_database = mysql_server
    name = new_database("sqlfile")
    sql = SQL_FILE.read_text(encoding="utf-8").replace("`examproctordb`", f"`{name}`")
    # Exactly what the README tells an installer to do: mysql -u root < examproctordb.sql
    subprocess.run([client, "-h", "127.0.0.1", "-P", "3306", "-u", "root"], input=sql, text=True, check=True,
                   capture_output=True)
    from_sql = _describe(f"{MYSQL_SERVER_URL}/{name}?charset=utf8mb4")
    from_migrations = _describe(database_url)
    assert set(from_sql) == set(from_migrations)
    for table in from_sql:
        assert from_sql[table] == from_migrations[table], table
    # every key to a student or a session cascades
    cascading = {(t, fk[0]) for t, d in from_sql.items() for fk in d["fks"] if fk[3] == "CASCADE"}
    for required in [("exam_sessions", ("StudentID",)), ("exam_results", ("StudentID",)), ("exam_results", ("SessionID",)),
                     ("violations", ("StudentID",)), ("violations", ("SessionID",)), ("profiles", ("student_id",))]:
        assert required in cascading, f"{required} must be ON DELETE CASCADE"


def test_deleting_a_student_cascades(app):
    from datetime import timedelta

    from proctor.extensions import db
    from proctor.models import Exam, ExamResult, ExamSession, Profile, User, Violation, utcnow
    from tests.conftest import make_user

    sid = make_user(app, "cascade@example.edu")
    with app.app_context():
        exam = Exam(title="Cascade", duration_minutes=5)
        db.session.add(exam)
        db.session.flush()
        sess = ExamSession(student_id=sid, exam_id=exam.id, deadline=utcnow() + timedelta(minutes=5))
        db.session.add_all([sess, Profile(student_id=sid)])
        db.session.flush()
        db.session.add_all([ExamResult(student_id=sid, session_id=sess.id, exam_id=exam.id, status="FAIL"),
                            Violation(student_id=sid, session_id=sess.id, type="NO_FACE")])
        db.session.commit()
        db.session.delete(db.session.get(User, sid))
        db.session.commit()
        for model in (ExamSession, ExamResult, Violation, Profile):
            assert db.session.query(model).count() == 0, model.__name__
        assert db.session.get(Exam, exam.id) is not None
