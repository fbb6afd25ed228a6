"""Fake camera and microphone input for Chromium, made from the real test photos and real speech.

Chromium plays a .y4m file as the webcam (--use-file-for-fake-video-capture) and a .wav as the
microphone (--use-file-for-fake-audio-capture), looping both. Clips are built here from
../shared/testdata photos (resized, letterboxed with their own edge pixels, flipped or swapped
for the empty room; never drawn) and encoded with ffmpeg; speech comes from espeak-ng, room noise
and silence from sox. Everything is written to a cache directory (under the pytest tmp), never
to the repository.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTDATA = Path(os.environ.get("PROCTOR_TESTDATA", REPO_ROOT.parent / "shared" / "testdata"))

FRAME_W, FRAME_H = 640, 480
FPS = 10

# The photos the scenarios use (see ../shared/testdata/SOURCES.tsv).
FACE = "a_1_webcam_woman_T1.jpg"          # one person facing a webcam
EMPTY_ROOM = "f_5_living_room_empty.jpg"  # no person
GROUP = "e_2_three_business.jpg"          # several people
PERSON_A = "identity/obama.jpg"           # registration photo
PERSON_A_AGAIN = "identity/obama2.jpg"    # same person, another photo
PERSON_B = "identity/biden.jpg"           # a different person


class MediaError(RuntimeError):
    pass


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise MediaError(f"{tool} is not installed (apt-get install {tool})")
    return path


def load_photo(name: str) -> np.ndarray:
    import cv2

    path = TESTDATA / name
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise MediaError(f"cannot read test photo {path} (set PROCTOR_TESTDATA)")
    return img


def fit_frame(img: np.ndarray, width: int = FRAME_W, height: int = FRAME_H) -> np.ndarray:
    """Scale the whole photo into the frame, padding with its own edge pixels (nothing drawn)."""
    import cv2

    h, w = img.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = max(2, int(round(w * scale))), max(2, int(round(h * scale)))
    resized = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top = (height - nh) // 2
    left = (width - nw) // 2
    return cv2.copyMakeBorder(resized, top, height - nh - top, left, width - nw - left, cv2.BORDER_REPLICATE)


@dataclass(frozen=True)
class Segment:
    """`seconds` of one photo (optionally mirrored or darkened) in the clip."""

    photo: str
    seconds: float
    flip: bool = False
    gain: float = 1.0

    def frame(self) -> np.ndarray:
        import cv2

        img = fit_frame(load_photo(self.photo))
        if self.flip:
            img = cv2.flip(img, 1)
        if self.gain != 1.0:
            img = np.clip(img.astype(np.float32) * self.gain, 0, 255).astype(np.uint8)
        return img


SENSOR_NOISE_SIGMA = 2.0


def write_y4m(segments: list[Segment], out: Path, fps: int = FPS) -> Path:
    """Encode the segments as a 4:2:0 .y4m clip with ffmpeg."""
    ffmpeg = _need("ffmpeg")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part.y4m")
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
           "-s", f"{FRAME_W}x{FRAME_H}", "-r", str(fps), "-i", "-", "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", str(tmp)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    rng = np.random.default_rng(20261125)
    for seg in segments:
        frame = seg.frame().astype(np.int16)
        for _ in range(max(1, int(round(seg.seconds * fps)))):
            # A real webcam never repeats a frame exactly: mild sensor noise (sigma 2 grey levels) keeps
            # the clip from reading as a frozen camera (CAMERA_OFF) while the scene itself holds still.
            noisy = frame + rng.normal(0.0, SENSOR_NOISE_SIGMA, frame.shape).astype(np.int16)
            proc.stdin.write(np.clip(noisy, 0, 255).astype(np.uint8).tobytes())
    proc.stdin.close()
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.wait() != 0:
        raise MediaError(f"ffmpeg failed making {out.name}: {err}")
    tmp.replace(out)
    return out


def write_wav_speech(out: Path, text: str, lead_silence_s: float = 5.0, speech_repeats: int = 3) -> Path:
    """Quiet room noise for `lead_silence_s` (the page calibrates its noise floor on it), then speech."""
    espeak, sox = _need("espeak-ng"), _need("sox")
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = out.with_suffix(".speech.wav")
    subprocess.run([espeak, "-s", "150", "-a", "180", "-w", str(raw), text], check=True, capture_output=True)
    speech = out.with_suffix(".speech48.wav")
    subprocess.run([sox, str(raw), "-r", "48000", "-c", "1", "-b", "16", str(speech), "repeat", str(speech_repeats - 1)],
                   check=True, capture_output=True)
    lead = out.with_suffix(".lead.wav")
    _room_noise(lead, lead_silence_s)
    subprocess.run([sox, str(lead), str(speech), str(out)], check=True, capture_output=True)
    for p in (raw, speech, lead):
        p.unlink(missing_ok=True)
    return out


def _room_noise(out: Path, seconds: float) -> None:
    # Very quiet pink noise: a real room is never digitally silent, and a -inf floor is not a floor.
    subprocess.run([_need("sox"), "-n", "-r", "48000", "-c", "1", "-b", "16", str(out), "synth", f"{seconds}",
                    "pinknoise", "vol", "0.002"], check=True, capture_output=True)


def write_wav_silence(out: Path, seconds: float = 20.0) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    _room_noise(out, seconds)
    return out


class MediaCache:
    """Builds each clip once per test run; names say what the camera or microphone shows."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str, spec) -> Path:
        digest = hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:10]
        return self.root / f"{name}-{digest}"

    def clip(self, name: str, segments: list[Segment]) -> Path:
        out = self._path(name, [SENSOR_NOISE_SIGMA] + [s.__dict__ for s in segments]).with_suffix(".y4m")
        if not out.exists():
            write_y4m(segments, out)
        return out

    # --- the scenarios -------------------------------------------------------------------
    def face(self, photo: str = FACE, seconds: float = 4.0) -> Path:
        """One person facing the camera, steady."""
        return self.clip("face", [Segment(photo, seconds)])

    def face_turning(self, photo: str = FACE) -> Path:
        """The same photo and its mirror image in turn: the measured head yaw changes sign."""
        return self.clip("face-turning", [Segment(photo, 1.0), Segment(photo, 1.0, flip=True)])

    def face_then_absent(self, photo: str = FACE, present_s: float = 4.0, absent_s: float = 6.0) -> Path:
        """Face present, then the empty room f_5 for more than 3 s, then (looping) back."""
        return self.clip("face-absent", [Segment(photo, present_s), Segment(EMPTY_ROOM, absent_s), Segment(photo, present_s)])

    def face_then_covered(self, photo: str = FACE, present_s: float = 4.0, covered_s: float = 8.0) -> Path:
        """Face present, then the lens covered: the same picture at 2 % of its light (a hand over the camera)."""
        return self.clip("face-covered", [Segment(photo, present_s), Segment(photo, covered_s, gain=0.02)])

    def empty_room(self) -> Path:
        return self.clip("empty-room", [Segment(EMPTY_ROOM, 2.0)])

    def group(self) -> Path:
        return self.clip("group", [Segment(GROUP, 2.0)])

    def speech(self, text: str = "Psst. The answer to question three is carbon dioxide. Tell me the next one, quickly.") -> Path:
        out = self._path("speech", text).with_suffix(".wav")
        if not out.exists():
            write_wav_speech(out, text)
        return out

    def silence(self, seconds: float = 20.0) -> Path:
        out = self._path("silence", seconds).with_suffix(".wav")
        if not out.exists():
            write_wav_silence(out, seconds)
        return out
