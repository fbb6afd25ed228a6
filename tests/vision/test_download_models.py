"""download_yolo_models.py with the real manifest and the real mirror folder (../shared/models)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import download_yolo_models as dl

REPO_ROOT = Path(__file__).resolve().parents[2]
MIRROR = Path(os.environ.get("PROCTOR_MODEL_MIRROR", REPO_ROOT.parent / "shared" / "models"))
CENTERNET = "centernet_mbv3_coco.onnx"
CENTERNET_SHA = "01b00aa8edb45dadc61fee4b6971f0e91af97a1d88edf5a6d8bcb5a694adf975"


@pytest.fixture(scope="module", autouse=True)
def _mirror_present():
    if not (MIRROR / CENTERNET).is_file():
        pytest.fail(f"model mirror not found at {MIRROR} (set PROCTOR_MODEL_MIRROR)")


def test_manifest_lists_the_models_with_licence_source_and_backend():
    models = dl.load_manifest(dl.DEFAULT_MANIFEST)
    assert set(models) >= {"centernet_mbv3_coco", "yolov8n", "yolov4-tiny"}
    for name, entry in models.items():
        for key in ("backend", "licence", "source", "input", "files"):
            assert entry.get(key), f"{name} lacks {key}"
        for f in entry["files"]:
            assert {"file", "sha256", "size", "url"} <= set(f)
    (cn,) = models["centernet_mbv3_coco"]["files"]
    assert cn["sha256"] == CENTERNET_SHA and cn["size"] == 8156360
    assert models["yolov8n"]["files"][0]["sha256"] is None                  # unknown here, said so
    assert "not reachable" in models["yolov8n"]["files"][0]["note"]
    assert models["yolov8n"]["licence"].startswith("AGPL-3.0")
    assert [f["file"] for f in models["yolov4-tiny"]["files"]] == ["yolov4-tiny.cfg", "yolov4-tiny.weights"]


def test_mirror_install_then_idempotent_second_run(tmp_path, capsys):
    dest = tmp_path / "models"
    assert dl.main(["--mirror", str(MIRROR), "--dest", str(dest)]) == 0
    err = capsys.readouterr().err
    installed = dest / CENTERNET
    assert dl.sha256_of(installed) == CENTERNET_SHA
    assert oct(installed.stat().st_mode & 0o777) == "0o644"
    assert f"{CENTERNET}: installed - from mirror" in err
    assert "100% of 8.2 MB" in err                                           # progress shown
    # The YOLO files are in neither the mirror nor fetched (no --online): reported, not fatal.
    assert "yolov8n.onnx: not available - not in mirror" in err and "pass --online" in err
    assert "could not get: yolov4-tiny, yolov8n, yolov8n_pt" in err
    # Every model the mirror holds is installed (the two detectors and the face descriptor), nothing else.
    assert sorted(p.name for p in dest.iterdir()) == sorted([CENTERNET, "faceres.onnx", "nanodet.onnx"])
    assert "faceres.onnx: installed - from mirror" in err and "nanodet.onnx: installed - from mirror" in err

    mtime = installed.stat().st_mtime_ns
    assert dl.main(["--mirror", str(MIRROR), "--dest", str(dest), "--models", "centernet_mbv3_coco"]) == 0
    err = capsys.readouterr().err
    assert f"{CENTERNET}: already installed - verified" in err
    assert installed.stat().st_mtime_ns == mtime


def test_sha_mismatch_in_mirror_is_detected_and_nothing_installed(tmp_path, capsys):
    fake = tmp_path / "mirror"
    fake.mkdir()
    data = bytearray((MIRROR / CENTERNET).read_bytes())
    data[4096] ^= 0xFF                                                       # same size, one byte off
    (fake / CENTERNET).write_bytes(bytes(data))
    dest = tmp_path / "models"
    assert dl.main(["--mirror", str(fake), "--dest", str(dest), "--models", "centernet_mbv3_coco"]) == 1
    err = capsys.readouterr().err
    assert "sha256/size mismatch" in err and CENTERNET_SHA in err
    assert not (dest / CENTERNET).exists()
    assert list(dest.iterdir()) == []                                        # temporary file removed


def test_truncated_file_is_a_size_mismatch(tmp_path, capsys):
    fake = tmp_path / "mirror"
    fake.mkdir()
    (fake / CENTERNET).write_bytes((MIRROR / CENTERNET).read_bytes()[:1000])
    assert dl.main(["--mirror", str(fake), "--dest", str(tmp_path / "m"), "--models", "centernet_mbv3_coco"]) == 1
    assert "size 1000 bytes, expected 8156360" in capsys.readouterr().err


def test_corrupt_installed_file_is_replaced_from_the_mirror(tmp_path, capsys):
    dest = tmp_path / "models"
    dest.mkdir()
    (dest / CENTERNET).write_bytes(b"half a download")
    assert dl.main(["--mirror", str(MIRROR), "--dest", str(dest), "--models", "centernet_mbv3_coco"]) == 0
    err = capsys.readouterr().err
    assert "does not match" in err and "installed - from mirror" in err
    assert dl.sha256_of(dest / CENTERNET) == CENTERNET_SHA


def test_missing_model_reported_with_exit_0(tmp_path, capsys):
    empty = tmp_path / "empty_mirror"
    empty.mkdir()
    assert dl.main(["--mirror", str(empty), "--dest", str(tmp_path / "m"), "--models", "centernet_mbv3_coco"]) == 0
    err = capsys.readouterr().err
    assert f"{CENTERNET}: not available - not in mirror {empty}; no public URL" in err
    assert "could not get: centernet_mbv3_coco" in err


def test_file_without_known_sha_is_installed_and_flagged_unverified(tmp_path, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "yolov4-tiny.cfg").write_text("[net]\nwidth=416\n")
    (mirror / "yolov4-tiny.weights").write_bytes(b"\x00" * 64)
    assert dl.main(["--mirror", str(mirror), "--dest", str(tmp_path / "m"), "--models", "yolov4-tiny"]) == 0
    err = capsys.readouterr().err
    assert "yolov4-tiny.weights: installed - from mirror" in err and "no sha256 known: not verified" in err
    import hashlib
    assert f"its sha256 is {hashlib.sha256(bytes(64)).hexdigest()}, record it in the manifest" in err
    assert dl.main(["--mirror", str(mirror), "--dest", str(tmp_path / "m"), "--models", "yolov4-tiny"]) == 0
    assert "already installed - present (no sha256 known: not verified)" in capsys.readouterr().err


def test_mirror_from_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROCTOR_MODEL_MIRROR", str(MIRROR))
    assert dl.main(["--dest", str(tmp_path / "m"), "--models", "centernet_mbv3_coco"]) == 0
    assert (tmp_path / "m" / CENTERNET).is_file()


def test_online_failure_is_reported_not_fatal(tmp_path, capsys):
    # A manifest whose URL points at a closed local port: the download fails cleanly.
    manifest = json.loads(dl.DEFAULT_MANIFEST.read_text())
    entry = manifest["models"]["yolov8n"]
    entry["files"][0]["url"] = "http://127.0.0.1:9/yolov8n.onnx"
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    code = dl.main(["--manifest", str(path), "--online", "--dest", str(tmp_path / "m"), "--models", "yolov8n"])
    assert code == 0
    err = capsys.readouterr().err
    assert "download from http://127.0.0.1:9/yolov8n.onnx failed" in err


@pytest.mark.parametrize("args, message", [
    (["--models", "yolov99"], "unknown model(s) yolov99"),
    (["--mirror", "/nonexistent/mirror"], "mirror folder /nonexistent/mirror does not exist"),
    (["--manifest", "/nonexistent/manifest.json"], "cannot read manifest"),
])
def test_bad_arguments_exit_2(tmp_path, capsys, args, message):
    assert dl.main(args + ["--dest", str(tmp_path / "m")]) == 2
    assert message in capsys.readouterr().err


def test_command_line(tmp_path):
    run = subprocess.run([sys.executable, str(REPO_ROOT / "download_yolo_models.py"), "--mirror", str(MIRROR),
                          "--dest", str(tmp_path / "m"), "--models", "centernet_mbv3_coco,yolov8n"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "models ready in" in run.stderr and "centernet_mbv3_coco" in run.stderr
    listing = subprocess.run([sys.executable, str(REPO_ROOT / "download_yolo_models.py"), "--list"],
                             capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0 and "AGPL-3.0" in listing.stdout and "yolov4-tiny.weights" in listing.stdout
    bad = subprocess.run([sys.executable, str(REPO_ROOT / "download_yolo_models.py"), "--bogus-flag"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unrecognized arguments" in bad.stderr
