"""Disk: a full data folder (ENOSPC) is a 507 that stores nothing partial; an unwritable data
folder stops the app at start with a clear ConfigError; audio per session has a quota (413), and
the exam page records at the bitrate the server sizes that quota for."""
from __future__ import annotations

import errno
import io
import logging
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import _test_config, csrf_token
from tests.web.test_exam_flow import _started, make_exam


@pytest.fixture(scope="module")
def webm(tmp_path_factory) -> bytes:
    """A real WebM/Opus recording (speech from espeak-ng, encoded by ffmpeg), as MediaRecorder makes."""
    d = tmp_path_factory.mktemp("audio")
    subprocess.run(["espeak-ng", "-w", str(d / "s.wav"), "the answer to question three is four"], check=True, capture_output=True)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(d / "s.wav"), "-c:a", "libopus", str(d / "s.webm")], check=True)
    return (d / "s.webm").read_bytes()


def send_chunk(client, token, session_id, data: bytes, seq: int):
    return client.post("/api/exam/audio-chunk", headers={"X-CSRFToken": token}, content_type="multipart/form-data",
                       data={"session_id": str(session_id), "seq": str(seq), "chunk": (io.BytesIO(data), "chunk", "audio/webm")})


def recordings(app, session_id):
    from proctor.extensions import db
    from proctor.models import Recording

    with app.app_context():
        return db.session.scalar(select(func.count(Recording.id)).where(Recording.session_id == session_id))


class _FullDiskFile:
    """A file on a full disk: the first write stores half its bytes, then ENOSPC."""

    def __init__(self, real):
        self._real = real

    def write(self, data):
        self._real.write(bytes(data[: len(data) // 2]))
        self._real.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._real.close()


def test_full_disk_is_507_and_stores_nothing(app, student_client, webm, monkeypatch, caplog):
    import builtins

    session_id = _started(app, exam_id=make_exam(app))
    token = csrf_token(student_client, "/student/")
    recordings_dir = Path(app.config["PROCTOR_DATA_DIR"]) / "recordings"
    real_open = io.open

    def full_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if "recordings" in str(file) and any(m in mode for m in "wxa"):
            return _FullDiskFile(handle)
        return handle

    monkeypatch.setattr(io, "open", full_open)
    monkeypatch.setattr(builtins, "open", full_open)
    with caplog.at_level(logging.ERROR):
        resp = send_chunk(student_client, token, session_id, webm, 0)
    monkeypatch.undo()
    assert resp.status_code == 507, resp.get_data(as_text=True)
    assert resp.get_json() == {"error": "the server's storage is full: the audio chunk was not saved", "code": 507}
    assert any("No space left" in r.getMessage() or "ENOSPC" in r.getMessage() or "full" in r.getMessage() for r in caplog.records)
    assert recordings(app, session_id) == 0
    leftovers = [p for p in recordings_dir.rglob("*") if p.is_file()] if recordings_dir.exists() else []
    assert leftovers == []  # nothing partial: the temporary file was removed
    resp = send_chunk(student_client, token, session_id, webm, 0)  # space again: the same chunk is stored whole
    assert resp.status_code == 201
    stored = [p for p in recordings_dir.rglob("*") if p.is_file()]
    assert len(stored) == 1 and stored[0].read_bytes() == webm and not stored[0].name.startswith(".")


def _unwritable_dirs(tmp_path) -> list[Path]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    dirs = [a_file / "data", Path("/proc/proctor-test-data")]  # /proc refuses new entries even to root
    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        (ro / "probe").write_text("x")
    except OSError:
        dirs.append(ro)  # only when not root: root writes through a 0500 folder
    else:
        (ro / "probe").unlink()
    return dirs


def test_unwritable_data_folder_stops_the_app_with_a_clear_message(tmp_path):
    from proctor import ConfigError, create_app

    for data_dir in _unwritable_dirs(tmp_path):
        config = _test_config(f"sqlite:///{tmp_path / 'x.db'}", tmp_path / "instance")
        config["PROCTOR_DATA_DIR"] = str(data_dir)
        with pytest.raises(ConfigError) as err:
            create_app(config)
        assert "PROCTOR_DATA_DIR" in str(err.value) and str(data_dir) in str(err.value), str(err.value)


def test_audio_quota_per_session_is_413(app, student_client, webm):
    app.config["PROCTOR_AUDIO_MAX_BYTES_PER_SESSION"] = len(webm) * 2 + 10
    session_id = _started(app, exam_id=make_exam(app))
    token = csrf_token(student_client, "/student/")
    assert send_chunk(student_client, token, session_id, webm, 0).status_code == 201
    assert send_chunk(student_client, token, session_id, webm[100:], 1).status_code == 201
    resp = send_chunk(student_client, token, session_id, webm[100:], 2)
    assert resp.status_code == 413
    body = resp.get_json()
    assert set(body) == {"error", "code"} and body["code"] == 413
    assert "audio limit" in body["error"] and str(len(webm) * 2 + 10) in body["error"]
    assert recordings(app, session_id) == 2


def test_exam_page_records_at_the_servers_bitrate(app, student_client):
    app.config["PROCTOR_AUDIO_BITRATE_BPS"] = 24000
    session_id = _started(app, exam_id=make_exam(app))
    page = student_client.get(f"/student/sessions/{session_id}").get_data(as_text=True)
    assert 'data-audio-bps="24000"' in page
    from tests.conftest import REPO_ROOT

    js = (REPO_ROOT / "static/js/student/proctor.js").read_text()
    assert "audioBitsPerSecond: audioBps" in js and "root.dataset.audioBps" in js
    from proctor.settings import BY_NAME

    quota, bitrate = BY_NAME["PROCTOR_AUDIO_MAX_BYTES_PER_SESSION"].default, BY_NAME["PROCTOR_AUDIO_BITRATE_BPS"].default
    assert quota / (bitrate / 8) >= 5 * 3600  # the default quota holds a five-hour exam at the default bitrate
