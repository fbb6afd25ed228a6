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
from tests.live import fit, live_frame, load_photo


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


# ------------------------------------------------------------------------------ the live runtime's evidence

T0 = 500.0
EVERY_S = 0.5  # 2 frames a second, as the exam page sends them


@pytest.fixture(scope="module")
def pipeline():
    from config_vision import load_vision_config
    from proctor.live.pipeline import FramePipeline

    p = FramePipeline(load_vision_config(env={}))
    assert p.info.get("detector", {}).get("loaded"), p.info  # models/centernet_mbv3_coco.onnx
    p.warm_up()
    yield p
    p.close()


def _median_diff(a, b, rows) -> float:
    return float(np.median(np.abs(a[rows].astype(int) - b[rows].astype(int))))


def test_the_snapshot_is_the_detector_frame_with_its_box_and_the_clip_spans_the_condition(pipeline, tmp_path):
    """10 s of an empty room, then a student with a phone at her ear (b_3, as in test_cadence_photos).
    PROHIBITED_OBJECT (TIME_BANNED_OBJECT_S 1 s here) fires on a frame the detector did not run on:
    the snapshot is the frame the detector saw the phone on, with its box drawn, and the clip runs from
    PROHIBITED_OBJECT's condition start minus the pre-roll to the firing plus the post-roll, written once
    the post-roll is over (until then a marker says it is being recorded)."""
    from proctor.live.evidence import read_frames, recording_ends_at
    from tests.live.test_cadence_photos import phone_at_the_ear
    from tests.live.test_runtime_unit import SESSION, STUDENT, MemoryStore, make_runtime

    store = MemoryStore()
    store.add_session()
    pipeline.forget(STUDENT)
    rt, _ = make_runtime(store, tmp_path, respond=pipeline.process, TIME_BANNED_OBJECT_S=1.0)
    room, caller = fit(load_photo("f_5_living_room_empty.jpg")), phone_at_the_ear()
    images = [live_frame(room, i) for i in range(20)] + [live_frame(caller, i) for i in range(20, 40)]
    sent, ran, early = {}, {}, None
    for i, image in enumerate(images):
        t = T0 + i * EVERY_S
        rt.submit_frame(STUDENT, SESSION, image, server_ts=t)
        rt.step()
        sent[t], ran[t] = image, rt.pool.jobs[-1].run_detector
        stored = [v for v in store.violations.values() if v.type == "PROHIBITED_OBJECT"]
        if stored and early is None:  # the violation is stored at once; its clip is still recording
            clip = tmp_path / stored[0].clip_path
            early = (clip.exists(), recording_ends_at(clip))
    found = [v for v in store.violations.values() if v.type == "PROHIBITED_OBJECT"]
    assert len(found) == 1, store.violations  # (and NO_FACE in the empty room before)
    v = found[0]
    fired, since = v.details["frame_t"], v.details["since"]
    assert not ran[fired], "the premise: the rule fires on a frame the detector did not run on"
    detector_t = max(t for t in ran if ran[t] and t <= fired)
    assert fired - detector_t >= EVERY_S

    # The snapshot is the detector's frame (the page's JPEG, drawn on), not the frame the rule fired on.
    snap = cv2.imread(str(tmp_path / v.evidence_path))
    assert snap.shape == (480, 640, 3)
    picture = slice(110, 360)  # between the status panel and the caption
    on_detector, on_fired = _median_diff(snap, sent[detector_t], picture), _median_diff(snap, sent[fired], picture)
    assert on_detector <= 2.0 < on_fired, (on_detector, on_fired)
    # ... with the phone's box drawn in red where the detector found it (the rule's details say where).
    phone = next(o for o in v.details["objects"] if o["label"] == "cell phone")
    x1, y1, x2, y2 = (int(round(c)) for c in phone["box"])
    def redness(image, x):  # red minus the larger of green and blue, down the box's left edge below its label
        column = image[y1 + 3:y2 - 3, x].astype(int)
        return float((column[:, 2] - column[:, :2].max(axis=1)).mean())

    assert redness(snap, x1) > redness(snap, x1 - 4) + 40 and redness(snap, x1) > redness(sent[detector_t], x1) + 40
    # ... and a caption along the bottom (darkened behind the text): the bottom rows are not the photo's.
    assert _median_diff(snap, sent[detector_t], slice(455, 475)) > 20

    # Early, the clip's file is not there and its marker says until when it records.
    assert early == (False, pytest.approx(fired + 3.0))
    clip = tmp_path / v.clip_path
    assert recording_ends_at(clip) is None and clip.is_file()
    stored = read_frames(clip)
    expected = [t for t in sorted(sent) if since - 8.0 <= t <= fired + 3.0]
    assert [t for t, _ in stored] == expected and expected[0] == since - 8.0 and expected[-1] == fired + 3.0
    assert rt.stats.as_dict(0.0)["counters"]["clips_written"] == 2  # NO_FACE's and this one


def _tab_switch_with_frames(tmp_path, until_s: float):
    """A stream of the a_1 student (result stand-in: no analysis), a TAB_SWITCH at 4 s, frames until
    `until_s`; (runtime, store, violation, frame times sent)."""
    from tests.live.test_runtime_unit import SESSION, STUDENT, MemoryStore, make_runtime, result_for

    store = MemoryStore()
    store.add_session()
    rt, _ = make_runtime(store, tmp_path, respond=result_for)
    face = fit(load_photo("a_1_webcam_woman_T1.jpg"))
    sent, violation = [], None
    i = 0
    while i * EVERY_S <= until_s:
        t = T0 + i * EVERY_S
        rt.submit_frame(STUDENT, SESSION, live_frame(face, i), server_ts=t)
        rt.step()
        sent.append(t)
        if t == T0 + 4.0:
            (issued,) = rt.browser_event(STUDENT, SESSION, "TAB_SWITCH", {})
            violation = store.violations[issued["violation_id"]]
        i += 1
    return rt, store, violation, sent


def test_a_session_that_ends_during_the_post_roll_writes_what_it_has(tmp_path):
    from proctor.live.evidence import read_frames, recording_ends_at
    from tests.live.test_runtime_unit import SESSION, STUDENT

    rt, store, v, sent = _tab_switch_with_frames(tmp_path, 5.0)  # 1 s of the 3 s post-roll
    clip = tmp_path / v.clip_path
    assert not clip.exists() and recording_ends_at(clip) is not None
    fired = v.details["frame_t"]
    assert T0 + 4.0 <= fired < T0 + 4.5  # the student's clock when the page's event came
    rt.session_ended(STUDENT, SESSION, "COMPLETED")
    assert recording_ends_at(clip) is None
    # An instant event: from 8 s before it, to what there was when the session ended.
    assert [t for t, _ in read_frames(clip)] == [t for t in sent if fired - 8.0 <= t]


def test_stopping_the_runtime_writes_the_clips_still_recording(tmp_path):
    from proctor.live.evidence import read_frames, recording_ends_at

    rt, store, v, sent = _tab_switch_with_frames(tmp_path, 4.5)
    clip = tmp_path / v.clip_path
    assert not clip.exists()
    rt.stop()
    assert recording_ends_at(clip) is None and len(read_frames(clip)) == len(sent)


def test_the_recorder_keeps_only_its_span_and_validates(tmp_path, frames):
    from proctor.live.evidence import ClipRecorder, recording_ends_at

    store, buf = EvidenceStore(tmp_path), PrerollBuffer(seconds=12.0)
    for t, jpeg in frames[:12]:  # 100.0 .. 105.5
        buf.add(1, t, jpeg)
    rec = ClipRecorder(store, buf, preroll_s=2.0, postroll_s=1.0)
    rel = rec.begin(1, 9, store.stem("NO_FACE", 105.5, 1), began_t=103.0, fired_t=105.5)
    assert recording_ends_at(tmp_path / rel) == 106.5 and rec.recording() == [1]
    for t, jpeg in frames[12:]:  # 106.0 .. 109.5: only 106.0 and 106.5 belong to it
        rec.add(1, t, jpeg)
    assert rec.finish_due(1, 106.4) == [] and rec.finish_due(1, 106.5) == [rel] and rec.recording() == []
    assert [t for t, _ in read_frames(tmp_path / rel)] == [101.0 + 0.5 * i for i in range(12)]
    assert sorted(p.suffix for p in (tmp_path / rel).parent.iterdir()) == [".frames"]  # the marker is gone
    # Without a post-roll the clip is written at once; an event time in the future of its firing is ignored.
    now = ClipRecorder(store, buf, preroll_s=2.0, postroll_s=0.0)
    rel = now.begin(1, 9, store.stem("TAB_SWITCH", 105.0, 2), began_t=float("nan"), fired_t=105.0)
    assert [t for t, _ in read_frames(tmp_path / rel)] == [103.0, 103.5, 104.0, 104.5, 105.0]
    for bad in ({"preroll_s": 0.0, "postroll_s": 1.0}, {"preroll_s": 13.0, "postroll_s": 1.0},
                {"preroll_s": 2.0, "postroll_s": -1.0}):
        with pytest.raises(ValueError):
            ClipRecorder(store, buf, **bad)
    assert remove_clip_files(tmp_path / rel) == 1
    # No analysed frame of the student at all (the camera is off, no worker runs): no clip, no marker.
    assert rec.begin(2, 9, store.stem("TAB_SWITCH", 105.0, 3), began_t=None, fired_t=105.0) is None
    assert rec.recording() == [] and not list((tmp_path / rel).parent.glob("*tab_switch_3*"))
