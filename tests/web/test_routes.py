"""The URLs the app serves stay what they were: a committed list (routes.txt) is the contract.

Moving views between packages or renaming blueprints must not change a URL that pages, scripts,
bookmarks or other tools use. When a URL is added or removed on purpose, update routes.txt in the
same change.
"""
from __future__ import annotations

from pathlib import Path

ROUTES_FILE = Path(__file__).with_name("routes.txt")


def served(app) -> list[str]:
    return sorted(f"{' '.join(sorted(rule.methods - {'HEAD', 'OPTIONS'}))} {rule.rule}" for rule in app.url_map.iter_rules())


def test_the_app_serves_exactly_the_committed_urls(app):
    committed = [line for line in ROUTES_FILE.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    now = served(app)
    assert now == sorted(committed), (
        f"new: {sorted(set(now) - set(committed))}; gone: {sorted(set(committed) - set(now))}")


def test_flask_routes_lists_them(app):
    from flask.cli import routes_command

    result = app.test_cli_runner().invoke(routes_command)
    assert result.exit_code == 0
    for line in ("/api/student-frame", "/admin/live/<int:student_id>", "/api/exam/<int:exam_id>/identity-frame"):
        assert line in result.output
