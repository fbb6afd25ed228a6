"""The live runtime stands on its own: proctor/live imports nothing from the web layer above it,
and no module of the web package grows past one room (about 500 lines)."""
from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "proctor"
LIVE = PACKAGE / "live"
FORBIDDEN_TOP = ("flask", "sqlalchemy", "werkzeug")  # and every flask_* package
MAX_LINES = 520


def _imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:  # "from .. import audit": each name is a module or a name in one
                    out += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
                    continue
            else:
                module = node.module
            out.append((node.lineno, module))
    return out


def _package_of(path: Path) -> str:
    """The package relative imports in this file start from (for an __init__.py, its own package)."""
    return ".".join(path.relative_to(REPO_ROOT).parts[:-1])


def test_live_imports_nothing_from_the_web_layer():
    files = sorted(LIVE.rglob("*.py"))
    assert len(files) >= 10, files  # the walk found the package
    bad = []
    for path in files:
        for line, module in _imported_modules(path, _package_of(path)):
            top = module.split(".")[0]
            web = module == "proctor" or (module.startswith("proctor.") and not
                                          (module == "proctor.live" or module.startswith("proctor.live.")))
            if top in FORBIDDEN_TOP or top.startswith("flask_") or web:
                bad.append(f"{path.relative_to(REPO_ROOT)}:{line} imports {module}")
    assert not bad, "proctor/live must not import the web layer:\n" + "\n".join(bad)


def test_the_import_walk_sees_relative_and_lazy_imports(tmp_path):
    """The check itself: a lazy `from ..extensions import db` inside a function is caught."""
    probe = LIVE / "runtime.py"
    source = "def f():\n    from ..extensions import db\n    from .. import audit\n    import flask_login\n"
    fake = tmp_path / "probe.py"
    fake.write_text(source)
    found = [m for _, m in _imported_modules(fake, _package_of(probe))]
    assert found == ["proctor.extensions", "proctor.audit", "flask_login"]


def test_no_module_of_the_web_package_is_two_rooms():
    sizes = sorted(((len(p.read_text().splitlines()), str(p.relative_to(REPO_ROOT))) for p in PACKAGE.rglob("*.py")),
                   reverse=True)
    print(f"longest modules: {sizes[:3]}")
    assert sizes[0][0] > 100  # the walk found real modules
    too_long = [f"{name}: {n} lines" for n, name in sizes if n > MAX_LINES]
    assert not too_long, f"split these along their seam (over {MAX_LINES} lines): {too_long}"
