"""Evidence: pre-roll buffer, snapshot paths, the pre-roll stored as a frames file, and WebM clips that a
browser can play (VP8) encoded from it on demand and cached."""
from __future__ import annotations

import json
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from proctor.live.evidence import (FRAMES_MAGIC, ClipError, EvidenceStore, NoEncoderError, PrerollBuffer, _decode_frames,
                                   _write_ffmpeg, cached_webm, clip_files, clip_fps, encode_frames_file, read_frames,
                                   remove_clip_files, write_clip, write_frames)
from tests.live import fit, load_photo


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


def test_the_pre_roll_is_stored_as_its_jpeg_frames_whole(tmp_path, frames):
    store = EvidenceStore(tmp_path)
    rel = store.save_clip_frames(42, store.stem("NO_FACE", 110.0, 3), frames)
    path = tmp_path / rel
    assert rel.startswith("evidence/42/110000_no_face_3_") and rel.endswith(".frames")
    assert read_frames(path) == frames  # the page's own bytes and times, nothing re-encoded
    # Compact: the JPEGs plus 12 bytes a frame and the 16-byte header.
    assert path.stat().st_size == len(FRAMES_MAGIC) + sum(12 + len(j) for _, j in frames)
    assert not cached_webm(path).exists()  # no encoding at violation time
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left


def test_a_frames_file_that_is_not_one_or_is_cut_short_is_refused(tmp_path, frames):
    good = tmp_path / "good.frames"
    write_frames(good, frames[:3])
    data = good.read_bytes()
    cases = {"cut.frames": data[:-10], "header.frames": data[:len(FRAMES_MAGIC) + 5], "empty.frames": FRAMES_MAGIC,
             "other.frames": b"RIFF" + data[4:], "huge.frames": FRAMES_MAGIC + b"\0" * 8 + b"\xff\xff\xff\x7f"}
    for name, raw in cases.items():
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(ClipError):
            read_frames(tmp_path / name)
        with pytest.raises(ClipError):
            encode_frames_file(tmp_path / name)
        assert not cached_webm(tmp_path / name).exists(), name


def test_encode_on_demand_is_cached_beside_the_frames(tmp_path, frames):
    path = tmp_path / "evidence" / "5" / "v.frames"
    write_frames(path, frames)
    meta = encode_frames_file(path)
    out = cached_webm(path)
    assert out == path.with_suffix(".webm") and meta["frames"] == 20 and meta["codec"] == "vp8"
    info = _probe(out)
    assert info["codec_name"] == "vp8" and int(info["nb_read_frames"]) == 20
    stamp = out.stat().st_mtime_ns
    assert encode_frames_file(path) == {"cached": True}
    assert out.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in path.parent.iterdir()) == ["v.frames", "v.webm"]


def test_without_an_encoder_nothing_is_cached(tmp_path, frames):
    path = tmp_path / "v.frames"
    write_frames(path, frames[:4])
    with pytest.raises(NoEncoderError):
        encode_frames_file(path, writers=())
    failing = (("broken", lambda p, images, fps: p.write_bytes(b"half a file") and False),)
    with pytest.raises(NoEncoderError):
        encode_frames_file(path, writers=failing)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.frames"]  # neither a cache nor a temporary file


def test_a_clips_files_are_found_and_removed_together(tmp_path, frames):
    folder = tmp_path / "evidence" / "8"
    path = folder / "a.frames"
    write_frames(path, frames[:3])
    encode_frames_file(path)
    (folder / ".a.0badf00d.part.webm").write_bytes(b"left by a killed encode")
    write_frames(folder / "b.frames", frames[:3])  # another clip: untouched
    assert [p.name for p in clip_files(path)] == [".a.0badf00d.part.webm", "a.frames", "a.webm"]
    assert remove_clip_files(path) == 3 and remove_clip_files(path) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["b.frames"]
    old = folder / "c.webm"  # a clip from before the frames files: a WebM written at violation time
    write_clip(old, frames[:3])
    assert clip_files(old) == [old] and remove_clip_files(old) == 1 and not old.exists()
