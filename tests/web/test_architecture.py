"""Who may import whom (docs/architecture.md), checked on the source so a wrong import fails here.

web areas (proctor.auth, .student, .admin, .api) -> shared web modules (proctor/*.py) -> proctor.live
-> decision_engine, warning_system -> pipelines (face_pipeline, face_identity, person_pipeline),
vision_ui -> config_vision. The areas do not import one another; only create_app (proctor/__init__.py)
sees them all.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AREAS = ("auth", "student", "admin", "api")
VISION = ("config_vision", "face_presence", "face_pipeline", "face_liveness", "face_descriptor", "face_identity",
          "presentation_attack", "hand_pipeline", "person_pipeline", "detector_backends", "decision_engine",
          "warning_system", "vision_ui")
# What each root vision module may import from the project (the rest of the one-way chain is below it).
VISION_MAY_IMPORT = {
    "config_vision": set(),
    "face_presence": set(),  # pure box logic: which faces the face stage's looks found count
    "face_pipeline": {"config_vision", "face_presence"},
    "face_liveness": {"face_pipeline"},
    "face_descriptor": set(),
    "face_identity": {"config_vision", "face_pipeline", "face_descriptor"},
    "presentation_attack": {"config_vision", "face_pipeline"},
    "hand_pipeline": {"config_vision"},
    # person_pipeline's backends live in detector_backends (one module in two files: person_pipeline
    # loads them on first use, they subclass its ObjectDetector).
    "person_pipeline": {"config_vision", "face_pipeline", "hand_pipeline", "detector_backends"},
    "detector_backends": {"config_vision", "person_pipeline"},
    "vision_ui": {"config_vision", "face_pipeline", "person_pipeline"},
    "decision_engine": {"config_vision", "face_pipeline", "person_pipeline"},
    "warning_system": {"config_vision", "decision_engine"},
}
NOT_VISION = {"app", "download_yolo_models"}  # the entry point and the model installer
WEB_ONLY = ("flask", "flask_login", "flask_socketio", "flask_sqlalchemy", "flask_wtf", "flask_limiter", "flask_migrate",
            "sqlalchemy", "pymysql", "proctor", "eventlet")


def imported_modules(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved against its package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = list(path.relative_to(ROOT).parts[:-1])  # a module's package; for __init__.py, the package itself
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:  # from . import x, y: each name may be a module
                    out |= {f"{mod}.{a.name}" for a in node.names}
                out.add(mod)
            else:
                out.add(node.module)
    return out


def area_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "proctor" and parts[1] in AREAS else None


@pytest.mark.parametrize("name", VISION)
def test_root_vision_modules_import_only_what_is_below_them(name):
    mods = imported_modules(ROOT / f"{name}.py")
    tops = {m.split(".")[0] for m in mods}
    assert not tops & set(WEB_ONLY), f"{name}.py imports the web layer: {sorted(tops & set(WEB_ONLY))}"
    project = tops & set(VISION)
    assert project <= VISION_MAY_IMPORT[name], f"{name}.py imports {sorted(project - VISION_MAY_IMPORT[name])}"


def test_every_root_module_has_its_place_in_the_chain():
    """A new root module is either a vision module listed above (with what it may import) or named here."""
    found = {p.stem for p in ROOT.glob("*.py")}
    assert found - NOT_VISION == set(VISION), sorted(found ^ (set(VISION) | NOT_VISION))


def test_web_areas_do_not_import_one_another():
    bad = []
    for area in AREAS:
        for path in (ROOT / "proctor" / area).rglob("*.py"):
            for mod in imported_modules(path):
                other = area_of(mod)
                if other is not None and other != area:
                    bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert not bad, bad


def test_shared_web_modules_do_not_import_an_area():
    bad = []
    for path in (ROOT / "proctor").glob("*.py"):
        if path.name == "__init__.py":
            continue  # create_app registers every area
        for mod in imported_modules(path):
            if area_of(mod) is not None:
                bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert not bad, bad


def test_the_checker_sees_a_cross_area_import(tmp_path):
    """The walk above must be able to fail: a relative import into another area is found."""
    probe = ROOT / "proctor" / "admin" / "_probe_for_test.py"
    probe.write_text("from ..student import steps\n", encoding="utf-8")
    try:
        mods = imported_modules(probe)
    finally:
        probe.unlink()
    assert "proctor.student" in mods and area_of("proctor.student.steps") == "student"
