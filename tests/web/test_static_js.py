"""Static checks on the JavaScript: the facts the server renders into the pages are never typed
again in a script, one helper library (static/js/common.js) is the only place postJSON is defined,
and no template loads the helper files it replaced."""
from __future__ import annotations

import re
from pathlib import Path

import config_vision

REPO_ROOT = Path(__file__).resolve().parents[2]
JS_ROOT = REPO_ROOT / "static" / "js"
TEMPLATES = REPO_ROOT / "templates"
DELETED = ("js/student/common.js", "js/admin/live_common.js")


def js_files() -> dict[str, str]:
    files = {str(p.relative_to(JS_ROOT)): p.read_text(encoding="utf-8") for p in sorted(JS_ROOT.rglob("*.js"))
             if "vendor" not in p.parts}
    assert "common.js" in files and len(files) >= 8, sorted(files)  # the walk found the scripts
    return files


def test_no_script_repeats_a_rule_message():
    for name, text in js_files().items():
        for r in config_vision.RULE_REGISTRY:
            assert r.message not in text, f"{name} repeats the {r.name} message; read it from Proctor.rules()"
            assert r.title not in re.findall(r'"([^"]*)"', text), f"{name} repeats the {r.name} title"


def test_no_script_lists_the_admin_events():
    from proctor.live.events import ADMIN_EVENTS

    quoted = re.compile(r"""["'](%s)["']""" % "|".join(ADMIN_EVENTS))
    for name, text in js_files().items():
        found = set(quoted.findall(text))
        assert not found, f"{name} lists admin event names {sorted(found)}; read them from Proctor.rules()"


def test_only_common_js_defines_post_json():
    definition = re.compile(r"\bfunction\s+postJSON\b|\bpostJSON\s*[:=]\s*(async\b|function\b|\()")
    defining = sorted(name for name, text in js_files().items() if definition.search(text))
    assert defining == ["common.js"]


def test_one_language_level():
    for name, text in js_files().items():
        assert text.lstrip().startswith("/*"), f"{name} starts without its one-line purpose"
        assert '"use strict";' in text, name
        assert not re.search(r"^\s*var\s", text, re.M), f"{name} uses var (const/let only)"
        assert not re.search(r"^\s*(import|export)\s", text, re.M), f"{name} is a module (plain <script> only)"
        assert "?." not in text and "??" not in text, f"{name} uses syntax newer than ES2017"


def test_no_template_loads_a_deleted_helper():
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        for deleted in DELETED:
            assert deleted not in text, f"{path.relative_to(REPO_ROOT)} loads {deleted}"
    for deleted in DELETED:
        assert not (REPO_ROOT / "static" / deleted).exists()
    base = (TEMPLATES / "base.html").read_text(encoding="utf-8")
    assert "filename='js/common.js'" in base
