"""Evidence: pre-roll buffer, snapshot paths, WebM clips that a browser can play (VP8), the clip process."""
from __future__ import annotations

import json
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from proctor.live.evidence import (ClipJob, ClipWriter, EvidenceStore, PrerollBuffer, _decode_frames, _write_ffmpeg,
                                   clip_fps, write_clip)
from tests.live import fit, load_photo, wait_for


def _jpeg(img) -> bytes:
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def frames():
    """10 s of a real webcam photo at 2 fps, panned a little each frame (a moving sequence)."""
    img = fit(load_photo("a_1_webcam_woman_T1.jpg"))
    out = []
    for i in range(20):
        shifted = np.roll(img, i * 6, axis=1)
        out.append((100.0 + i * 0.5, _jpeg(shifted)))
    return out


def _probe(path) -> dict:
    assert shutil.which("ffprobe"), "ffprobe (Debian ffmpeg) is needed to check clips"
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                          "stream=codec_name,width,height,nb_read_frames", "-of", "json", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["streams"][0]


def test_preroll_keeps_the_last_seconds_by_frame_time(frames):
    buf = PrerollBuffer(seconds=5.0)
    for t, jpeg in frames:
        buf.add(1, t, jpeg)
    kept = buf.clip(1)
    assert kept[-1][0] == frames[-1][0]
    assert kept[-1][0] - kept[0][0] <= 5.0 and len(kept) == 11
    buf.add(1, 50.0, frames[0][1])  # time went backwards: a new stream, the old frames are not its pre-roll
    assert [t for t, _ in buf.clip(1)] == [50.0]
    assert buf.clip(2) == []
    with pytest.raises(ValueError):
        PrerollBuffer(seconds=0)


def test_write_clip_makes_a_vp8_webm_that_opencv_and_ffprobe_read(tmp_path, frames):
    path = tmp_path / "evidence" / "1" / "clip.webm"
    meta = write_clip(path, frames)
    assert meta["codec"] == "vp8" and meta["frames"] == 20 and meta["fps"] == pytest.approx(2.0)
    info = _probe(path)
    assert info["codec_name"] == "vp8" and (info["width"], info["height"]) == (640, 480)
    assert int(info["nb_read_frames"]) == 20
    cap = cv2.VideoCapture(str(path))
    ok, first = cap.read()
    cap.release()
    assert ok and first.shape == (480, 640, 3)
    # The first frame still shows the photo (not a blank): compare with the source.
    src = cv2.imdecode(np.frombuffer(frames[0][1], np.uint8), cv2.IMREAD_COLOR)
    assert float(np.abs(first.astype(int) - src.astype(int)).mean()) < 12
    assert not list(path.parent.glob("*.part*"))


def test_ffmpeg_fallback_writes_the_same_format(tmp_path, frames):
    images = _decode_frames(frames[:6])
    path = tmp_path / "ff.webm"
    assert _write_ffmpeg(path, images, clip_fps(frames[:6]))
    info = _probe(path)
    assert info["codec_name"] == "vp8" and int(info["nb_read_frames"]) == 6


def test_mixed_sizes_and_bad_frames(tmp_path, frames):
    small = _jpeg(fit(load_photo("a_6_grace_hopper.jpg"), 321, 241))  # odd size: trimmed to even
    mixed = [(0.0, small), (0.5, b"\xff\xd8 broken"), (1.0, frames[0][1])]
    meta = write_clip(tmp_path / "m.webm", mixed)
    assert meta["frames"] == 2
    info = _probe(tmp_path / "m.webm")
    assert (info["width"], info["height"]) == (320, 240)
    from proctor.live.evidence import ClipError

    with pytest.raises(ClipError):
        write_clip(tmp_path / "none.webm", [(0.0, b"\xff\xd8 broken")])


def test_store_paths_are_relative_and_confined(tmp_path):
    store = EvidenceStore(tmp_path)
    stem = store.stem("NO_FACE", 123.456, 7)
    rel = store.save_snapshot(42, stem, _jpeg(fit(load_photo("f_5_living_room_empty.jpg"))))
    assert rel.startswith("evidence/42/123456_no_face_7_") and rel.endswith(".jpg")
    assert cv2.imread(str(tmp_path / rel)) is not None
    assert store.resolve(rel) == (tmp_path / rel).resolve()
    for bad in ("../secret_key", "evidence/../../x", "/etc/passwd"):
        with pytest.raises(ValueError):
            store.resolve(bad)


def test_clip_writer_process_round_trip_and_restart(tmp_path, frames):
    import os
    import signal

    writer = ClipWriter()
    writer.start()
    try:
        path = tmp_path / "evidence" / "9" / "v1.webm"
        writer.submit(ClipJob(1, str(path), "evidence/9/v1.webm", frames[:8]))
        done = []
        wait_for(lambda: done.extend(writer.poll()) or done, 120, "the clip writer never answered")
        assert done[0].violation_id == 1 and done[0].error is None and done[0].rel_path == "evidence/9/v1.webm"
        assert _probe(path)["codec_name"] == "vp8"

        os.kill(writer.child.pid, signal.SIGKILL)
        wait_for(lambda: writer.poll() is not None and writer.restarts == 1, 60, "the clip writer was not restarted")
        writer.submit(ClipJob(2, str(tmp_path / "v2.webm"), "v2.webm", frames[:4]))
        done = []
        wait_for(lambda: done.extend(writer.poll()) or done, 120, "no clip after the restart")
        assert done[0].violation_id == 2 and done[0].error is None
        assert writer.status()["written"] == 2
    finally:
        writer.stop()
