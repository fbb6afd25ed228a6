"""Evidence clip cost: CPU at violation time before (a WebM encode) and now (the frames file), and the
first open's encode.

    .venv/bin/python bench/clip_bench.py [--seconds 8] [--fps 2 5] [--repeats 5]

Prints figures only (no assertions). A pre-roll is `--seconds` of 640x480 webcam frames at each
`--fps` made from the real photos in ../shared/testdata (PROCTOR_TESTDATA): the student at her desk,
then the empty room, each frame shifted and flickered as a webcam's are, JPEG-encoded as the exam page
sends them (the pre-roll keeps the page's own bytes). For each pre-roll, `--repeats` times:

  before     write_clip() to a WebM: what the clip-writer process ran for every violation;
  now        EvidenceStore.save_clip_frames(): what the live loop now does for every violation;
  first open encode_frames_file(): the WebM a reviewer's first open makes (read + decode + encode);
  reopen     encode_frames_file() again: the cache is found, nothing encoded.

CPU is this process's user+system time (every thread: OpenCV's encoder threads count) plus its
children's (the ffmpeg fallback, if it ran). "Share of a core" is CPU per violation times
--violations-per-min / 60: the encoder's load on the server while an exam runs, before and now.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import cv2  # noqa: E402

from proctor.live.evidence import EvidenceStore, cached_webm, encode_frames_file, write_clip  # noqa: E402
from tests.live import fit, live_frame, load_photo  # noqa: E402

JPEG_QUALITY = 80


def cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(fn):
    c0, w0 = cpu_s(), time.perf_counter()
    out = fn()
    return cpu_s() - c0, time.perf_counter() - w0, out


def preroll(seconds: float, fps: float) -> list[tuple[float, bytes]]:
    face, room = fit(load_photo("a_1_webcam_woman_T1.jpg")), fit(load_photo("f_5_living_room_empty.jpg"))
    n = max(2, int(round(seconds * fps)))
    frames = []
    for i in range(n):
        img = live_frame(face if i < n // 2 else room, i)
        frames.append((1000.0 + i / fps, cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes()))
    return frames


def fmt(values: list[float], unit: str = "s", scale: float = 1.0) -> str:
    med = statistics.median(values) * scale
    return f"median {med:7.3f} {unit} (min {min(values) * scale:.3f}, max {max(values) * scale:.3f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="pre-roll length (PROCTOR_LIVE_PREROLL_S)")
    ap.add_argument("--fps", type=float, nargs="+", default=[2.0, 5.0],
                    help="frames a second in the pre-roll (PROCTOR_CAMERA_FPS, when every frame is analysed)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--violations-per-min", type=float, nargs=2, default=[5.0, 7.0])
    args = ap.parse_args()

    print(f"clip bench: {args.seconds:g} s pre-roll of 640x480 JPEG (q{JPEG_QUALITY}) webcam frames, "
          f"{args.repeats} repeats, cv2 {cv2.__version__}, {os.cpu_count()} CPUs")
    lo, hi = args.violations_per_min
    with tempfile.TemporaryDirectory(prefix="clip-bench-") as tmp:
        store = EvidenceStore(tmp)
        for fps in args.fps:
            frames = preroll(args.seconds, fps)
            jpeg_bytes = sum(len(j) for _, j in frames)
            before, now, now_wall, first, first_wall, reopen = [], [], [], [], [], []
            webm_bytes = frames_bytes = 0
            for r in range(args.repeats):
                old = Path(tmp) / f"old_{fps:g}_{r}.webm"
                cpu, _, meta = measure(lambda: write_clip(old, frames))
                before.append(cpu)
                stem = store.stem("NO_FACE", 1000.0 + r, r)
                cpu, wall, rel = measure(lambda: store.save_clip_frames(1, stem, frames))
                now.append(cpu)
                now_wall.append(wall)
                path = Path(tmp) / rel
                cpu, wall, _ = measure(lambda: encode_frames_file(path))
                first.append(cpu)
                first_wall.append(wall)
                cpu, _, cached = measure(lambda: encode_frames_file(path))
                assert cached == {"cached": True}
                reopen.append(cpu)
                frames_bytes, webm_bytes = path.stat().st_size, cached_webm(path).stat().st_size
            print(f"\n{len(frames)} frames ({fps:g} fps), JPEGs {jpeg_bytes / 1024:.0f} KB; writer {meta['writer']}")
            print(f"  before: encode at violation time   CPU {fmt(before)}")
            print(f"  now:    frames file at violation    CPU {fmt(now, 'ms', 1000)}; wall {fmt(now_wall, 'ms', 1000)}")
            print(f"  first open: encode from the file    CPU {fmt(first)}; wall {fmt(first_wall)}")
            print(f"  reopen: cached                      CPU {fmt(reopen, 'ms', 1000)}")
            print(f"  files: frames {frames_bytes / 1024:.0f} KB, cached WebM {webm_bytes / 1024:.0f} KB")
            b, n = statistics.median(before), statistics.median(now)
            print(f"  share of one core at {lo:g}-{hi:g} violations/min: before {100 * b * lo / 60:.1f}-"
                  f"{100 * b * hi / 60:.1f} %, now {100 * n * lo / 60:.3f}-{100 * n * hi / 60:.3f} %")


if __name__ == "__main__":
    main()
