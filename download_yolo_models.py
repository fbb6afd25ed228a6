"""Install the object-detector model files into models/ (see models/manifest.json, models/README.md).

    python download_yolo_models.py [--mirror DIR] [--online] [--models NAME[,NAME...]] [--dest models/]

Sources, in order: the mirror folder (--mirror, or the PROCTOR_MODEL_MIRROR environment
variable), then, only with --online, the official URL of each file. Every file is checked
against the sha256 in the manifest where one is known (a file with no known sha256 is taken as
is, and the report says so). Files already in place and verified are skipped, so running it
again does nothing. Each file is written to a temporary name and renamed only when it checks out.

Exit status: 0 when every file that could be got was installed (a model that is in neither the
mirror nor reachable is reported, not an error); 1 when a file's sha256 or size does not match
(nothing is installed for it); 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

REPO_ROOT = Path(__file__).resolve().parent
DEFAULT_MANIFEST = REPO_ROOT / "models" / "manifest.json"
DEFAULT_DEST = REPO_ROOT / "models"
MIRROR_ENV = "PROCTOR_MODEL_MIRROR"
CHUNK = 1 << 20

# Outcomes of one file.
OK_PRESENT = "already installed"
INSTALLED = "installed"
MISMATCH = "sha256/size mismatch"
MISSING = "not available"


@dataclass
class FileResult:
    model: str
    file: str
    status: str
    detail: str = ""


class UsageError(Exception):
    """Bad arguments or a bad manifest (exit 2)."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def load_manifest(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read manifest {path}: {exc}") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict) or not models:
        raise UsageError(f"manifest {path} has no 'models' object")
    for name, entry in models.items():
        files = entry.get("files") if isinstance(entry, dict) else None
        if not isinstance(files, list) or not files or not all(isinstance(f, dict) and f.get("file") for f in files):
            raise UsageError(f"manifest {path}: model {name!r} needs a non-empty 'files' list")
        for f in files:
            if Path(f["file"]).name != f["file"]:
                raise UsageError(f"manifest {path}: model {name!r}: file name {f['file']!r} must not hold a folder")
    return models


class Progress:
    """Progress on stderr: a rewritten line on a terminal, a few lines otherwise."""

    def __init__(self, label: str, total: int | None, stream=None):
        self.label, self.total, self.done = label, total, 0
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_step = -1

    def add(self, n: int) -> None:
        self.done += n
        if not self.total:
            return
        pct = min(100, int(self.done * 100 / self.total))
        step = pct // (1 if self.tty else 25)
        if step != self._last_step:
            self._last_step = step
            end = "\r" if self.tty and pct < 100 else "\n"
            self.stream.write(f"  {self.label}: {pct:3d}% of {self.total / 1e6:.1f} MB{end}")
            self.stream.flush()


def _copy_stream(src: BinaryIO, dst: BinaryIO, progress: Progress) -> None:
    for chunk in iter(lambda: src.read(CHUNK), b""):
        dst.write(chunk)
        progress.add(len(chunk))


def _check(path: Path, spec: dict) -> str | None:
    """None when the file matches the manifest; else what is wrong."""
    size = spec.get("size")
    if size is not None and path.stat().st_size != size:
        return f"size {path.stat().st_size} bytes, expected {size}"
    want = spec.get("sha256")
    if want:
        got = sha256_of(path)
        if got != want.lower():
            return f"sha256 {got}, expected {want}"
    return None


def _fetch(opener: Callable[[Path], BinaryIO], total: int | None, label: str, dest: Path, spec: dict) -> tuple[str, str]:
    """Write to a temporary file beside dest, check, then rename. Returns (status, detail)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, opener(dest) as src:
            _copy_stream(src, out, Progress(f"{dest.name} from {label}", total))
        problem = _check(tmp, spec)
        if problem:
            return MISMATCH, f"{label}: {problem}; not installed"
        note = "" if spec.get("sha256") else (
            f" (no sha256 known: not verified; its sha256 is {sha256_of(tmp)}, record it in the manifest)")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; model files are plain data
        os.replace(tmp, dest)
        return INSTALLED, f"from {label}{note}"
    finally:
        tmp.unlink(missing_ok=True)


def install_file(model: str, spec: dict, dest_dir: Path, mirror: Path | None, online: bool,
                 timeout_s: float = 60.0) -> FileResult:
    name = spec["file"]
    dest = dest_dir / name
    if dest.is_file():
        problem = _check(dest, spec)
        if problem is None:
            detail = "verified" if spec.get("sha256") else "present (no sha256 known: not verified)"
            return FileResult(model, name, OK_PRESENT, detail)
        print(f"  {name}: the installed file does not match ({problem}); getting it again", file=sys.stderr)

    tried = []
    if mirror is not None:
        src = mirror / name
        if src.is_file():
            status, detail = _fetch(lambda _d: open(src, "rb"), src.stat().st_size, f"mirror {mirror}", dest, spec)
            return FileResult(model, name, status, detail)
        tried.append(f"not in mirror {mirror}")
    else:
        tried.append("no mirror given")

    url = spec.get("url")
    if online and url:
        try:
            response = urllib.request.urlopen(url, timeout=timeout_s)  # noqa: S310 - URLs come from the manifest
        except (urllib.error.URLError, OSError, ValueError) as exc:
            tried.append(f"download from {url} failed: {exc}")
        else:
            total = response.headers.get("Content-Length")
            try:
                status, detail = _fetch(lambda _d: response, int(total) if total and total.isdigit() else None,
                                        url, dest, spec)
            except (urllib.error.URLError, OSError) as exc:
                tried.append(f"download from {url} failed: {exc}")
            else:
                return FileResult(model, name, status, detail)
    elif url:
        tried.append("not downloaded (pass --online to fetch " + url + ")")
    else:
        tried.append("no public URL")
    return FileResult(model, name, MISSING, "; ".join(tried))


def run(models: dict, selected: list[str], dest_dir: Path, mirror: Path | None, online: bool) -> list[FileResult]:
    results = []
    for model in selected:
        entry = models[model]
        print(f"{model} ({entry.get('backend', '?')}, licence: {entry.get('licence', 'not stated')})", file=sys.stderr)
        for spec in entry["files"]:
            res = install_file(model, spec, dest_dir, mirror, online)
            print(f"  {res.file}: {res.status}" + (f" - {res.detail}" if res.detail else ""), file=sys.stderr)
            results.append(res)
    return results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Install detector model files into models/ from a mirror folder or (with --online) "
                    "the official URLs, checking sha256 where known.")
    p.add_argument("--mirror", help=f"folder holding model files (default: ${MIRROR_ENV} if set)")
    p.add_argument("--online", action="store_true", help="download files not found in the mirror from their URLs")
    p.add_argument("--models", action="append", default=[],
                   help="model names to install, comma-separated or repeated (default: all in the manifest)")
    p.add_argument("--dest", default=str(DEFAULT_DEST), help="folder to install into (default: models/)")
    p.add_argument("--manifest", default=str(DEFAULT_MANIFEST), help="manifest file (default: models/manifest.json)")
    p.add_argument("--list", action="store_true", help="list the models in the manifest and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        models = load_manifest(Path(args.manifest))
        if args.list:
            for name, entry in models.items():
                files = ", ".join(f["file"] for f in entry["files"])
                print(f"{name:22} {entry.get('backend', '?'):15} {files}  [{entry.get('licence', 'not stated')}]")
            return 0
        selected = [n.strip() for arg in args.models for n in arg.split(",") if n.strip()] or list(models)
        unknown = [n for n in selected if n not in models]
        if unknown:
            raise UsageError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(models)}")
        mirror_arg = args.mirror or os.environ.get(MIRROR_ENV) or None
        mirror = Path(mirror_arg) if mirror_arg else None
        if mirror is not None and not mirror.is_dir():
            raise UsageError(f"mirror folder {mirror} does not exist")
        dest = Path(args.dest)
        if dest.exists() and not dest.is_dir():
            raise UsageError(f"--dest {dest} is not a folder")
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    results = run(models, selected, dest, mirror, args.online)
    bad = [r for r in results if r.status == MISMATCH]
    missing = sorted({r.model for r in results if r.status == MISSING})
    got = sorted({r.model for r in results if r.status in (INSTALLED, OK_PRESENT)}
                 - {r.model for r in results if r.status != INSTALLED and r.status != OK_PRESENT})
    print(f"models ready in {dest}: {', '.join(got) or 'none'}", file=sys.stderr)
    if missing:
        print(f"could not get: {', '.join(missing)} (see above; the app uses the detectors it has)", file=sys.stderr)
    if bad:
        print("sha256/size MISMATCH (not installed): " + ", ".join(f"{r.model}/{r.file}" for r in bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
