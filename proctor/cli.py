"""Command-line tools: `flask --app app <command>`."""
from __future__ import annotations

import secrets
from pathlib import Path

import click
from flask import Flask
from sqlalchemy import select

from .accounts import AccountError, create_account, find_by_email
from .extensions import db
from .models import Exam, Question
from .settings import REPO_ROOT


def register_cli(app: Flask) -> None:
    from .cli_vision import register_vision_cli  # analyze, verify-face (no database)
    register_vision_cli(app)

    @app.cli.command("create-user")
    @click.option("--role", type=click.Choice(["ADMIN", "STUDENT"]), required=True, help="Account role.")
    @click.option("--email", required=True, help="Login email (unique).")
    @click.option("--password", required=True, help="Password (8 to 128 characters).")
    @click.option("--name", required=True, help="Full name.")
    def create_user(role, email, password, name):
        """Create an account."""
        try:
            student = create_account(name, email, password, role)
        except AccountError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"created {student.role} account {student.email} (id {student.id})")

    @app.cli.command("seed-demo")
    def seed_demo():
        """One admin, two students and a published demo exam; prints the credentials."""
        accounts = [
            ("ADMIN", "Demo Admin", "admin@example.edu"),
            ("STUDENT", "Demo Student One", "student1@example.edu"),
            ("STUDENT", "Demo Student Two", "student2@example.edu"),
        ]
        for role, name, email in accounts:
            if find_by_email(email):
                click.echo(f"{role:<8} {email:<24} (exists; password unchanged)")
                continue
            password = secrets.token_urlsafe(9)  # fresh per install: no default credentials anywhere
            create_account(name, email, password, role)
            click.echo(f"{role:<8} {email:<24} password: {password}")
        if db.session.scalar(select(Exam).where(Exam.title == DEMO_EXAM_TITLE)) is None:
            admin = find_by_email("admin@example.edu")
            exam = Exam(
                title=DEMO_EXAM_TITLE,
                description="A short practice exam to try the proctored exam flow.",
                duration_minutes=15,
                pass_mark_percent=60,
                is_published=True,
                created_by=admin.id if admin else None,
            )
            for position, (text, options, correct) in enumerate(DEMO_QUESTIONS):
                q = Question(text=text, correct_index=correct, position=position)
                q.options = options
                exam.questions.append(q)
            db.session.add(exam)
            db.session.commit()
            click.echo(f"exam     '{exam.title}' with {len(DEMO_QUESTIONS)} questions (published)")

    @app.cli.command("dump-schema")
    @click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=REPO_ROOT / "examproctordb.sql", show_default=True)
    def dump_schema(output: Path):
        """Write the MySQL/MariaDB DDL (examproctordb.sql) from the models."""
        from .schema import mysql_ddl

        output.write_text(mysql_ddl(db.metadata), encoding="utf-8")
        click.echo(f"wrote {output}")

    @app.cli.command("settings")
    @click.option("--vision/--no-vision", default=True, show_default=True, help="Also print the vision settings.")
    def settings_command(vision: bool):
        """Print every setting: name, default, bounds, meaning (environment variables)."""
        from . import settings as app_settings

        click.echo("# App settings (proctor/settings.py); environment variable = app.config key")
        click.echo(app_settings.describe())
        if vision:
            import config_vision

            click.echo("\n# Vision settings (config_vision.py); environment variable PROCTOR_<NAME>, "
                       f"or a JSON file named by {config_vision.SETTINGS_FILE_ENV}")
            click.echo(config_vision.describe())

    @app.cli.command("init-db")
    def init_db_command():
        """Bring the database schema up to date (Alembic migrations)."""
        from . import init_db

        init_db(app)
        click.echo("database is up to date")


DEMO_EXAM_TITLE = "Demo: General Knowledge"
DEMO_QUESTIONS = [
    ("What is 7 x 8?", ["54", "56", "64", "48"], 1),
    ("Which planet is closest to the Sun?", ["Venus", "Earth", "Mercury", "Mars"], 2),
    ("What is the chemical symbol for water?", ["H2O", "O2", "CO2", "NaCl"], 0),
    ("How many sides does a hexagon have?", ["5", "6", "7", "8"], 1),
    ("Which gas do plants absorb from the air?", ["Oxygen", "Nitrogen", "Carbon dioxide", "Helium"], 2),
    ("What is the boiling point of water at sea level in Celsius?", ["90", "100", "110", "120"], 1),
    ("Which is a prime number?", ["21", "27", "29", "33"], 2),
    ("What is the largest ocean on Earth?", ["Atlantic", "Indian", "Arctic", "Pacific"], 3),
    ("How many minutes are in two hours?", ["100", "120", "140", "160"], 1),
    ("Which of these is a mammal?", ["Shark", "Dolphin", "Trout", "Octopus"], 1),
    ("What is 15 % of 200?", ["15", "20", "30", "45"], 2),
    ("Which language runs this server?", ["Python", "COBOL", "Fortran", "Ada"], 0),
]
