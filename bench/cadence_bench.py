"""The object detector's cadence: detector runs per student-minute and CPU ms per frame, by scene
(proctor/live/cadence.py) against the old fixed one frame in two.

    .venv/bin/python bench/cadence_bench.py [--seconds 60] [--clips steady,moving,object]

Prints figures only (no assertions). Each clip is a 2 frames/s webcam stream made from the real
photos in ../shared/testdata (PROCTOR_TESTDATA), as tests/live.live_frame makes one (a shake of a
few pixels, exposure flicker):

  steady   a student at her desk, still (a_1);
  moving   the same student, her arms and torso moving all the time: the lower half of the picture
           shifts by up to 40 pixels from frame to frame (the upper half, her face, stays);
  object   a still student who raises a laptop held in both hands (d_3) into the lower half of the
           picture for 10 s in every 30.5 s.

Each clip runs twice through the real Stream (cadence, ObjectEvidence, decision engine) and an
in-process FramePipeline (JPEG-free: face stage, lower-half motion, CenterNet detector): "every 2"
with the detector forced on every other frame (the old DETECTOR_EVERY_N_FRAMES=2), "cadence" with
the stream's DetectorCadence. CPU ms per frame is this process's CPU time (all threads) for the
worker's part of each frame, divided by the frames; the detector's own ms per run is printed too.
The time from the laptop's appearance to PROHIBITED_OBJECT (frame time) is printed for "object".
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FPS = 2.0
STUDENT = 7


class EveryNFrames:
    """The old cadence (DETECTOR_EVERY_N_FRAMES), with DetectorCadence's interface."""

    def __init__(self, n: int = 2):
        self.n, self.frames, self.reasons = n, 0, {}

    def due(self, frame_t, stretch=1.0):  # stretch: the overload factor, which the old cadence ignored
        due = self.frames % self.n == 0
        self.frames += 1
        return "every_n" if due else None

    def ran(self, frame_t, reason):
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def observe(self, result, detections=None):
        return None

    def summary(self):
        return {"watching": None, "runs": dict(self.reasons)}


# ------------------------------------------------------------------ clips

def _photo(name):
    from tests.live import fit, load_photo

    return fit(load_photo(name))


def clip(name: str, frames: int):
    """(label, [BGR frames], [frame index where a prohibited object appears])."""
    import cv2
    import numpy as np

    from tests.live import live_frame

    student = _photo("a_1_webcam_woman_T1.jpg")
    if name == "steady":
        return "a still student", [live_frame(student, i) for i in range(frames)], []
    if name == "moving":
        # The torso sways: rows below y=200 shift sideways, more the lower they are (up to 40 px at the
        # bottom), a different amount every frame; no seam, the face (above) stays put.
        ys, xs = np.mgrid[0:480, 0:640].astype(np.float32)
        bend = np.clip((ys - 200) / 280, 0, 1)
        out = []
        for i in range(frames):
            dx = 40 * np.sin(i * 1.3)
            out.append(cv2.remap(live_frame(student, i), xs - dx * bend, ys, cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REFLECT))
        return "a student swaying her torso all the time (lower half moves, face stays)", out, []
    if name == "object":
        laptop = _photo("d_3_woman_holding_xo_laptop.jpg")[270:480, 110:500]
        laptop = cv2.resize(laptop, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
        raised = student.copy()
        h, w = laptop.shape[:2]
        raised[480 - h:, (640 - w) // 2:(640 - w) // 2 + w] = laptop
        # 30.5 s periods, so the laptop comes up once on an even frame and once on an odd one (the old
        # 1 in 2 frames then runs the detector on the frame itself or on the next).
        period, held = 61, int(10 * FPS)
        out = [live_frame(raised if (i % period) >= period - held else student, i) for i in range(frames)]
        appear = [i for i in range(frames) if i % period == period - held]
        return "a student raising a laptop for 10 s in every 30.5 s", out, appear
    raise SystemExit(f"unknown clip {name!r}")


# ------------------------------------------------------------------ run

def run(pipeline, config, frames, mode: str, appear: list[int]):
    from proctor.live.frames import Frame
    from proctor.live.store import SessionInfo
    from proctor.live.streams import ExamRulesCache, Stream

    rules = ExamRulesCache(config).for_exam("{}", 1)
    info = SessionInfo(70, STUDENT, "IN_PROGRESS", "Bench", 1, "Bench exam", False, None, frozenset(), frozenset(),
                       "{}", None)
    stream = Stream.open(info, rules)
    stream.forget()
    if mode == "every 2":
        stream.cadence = EveryNFrames(2)
    pipeline.forget(STUDENT)
    t0 = 1000.0
    cpu = 0.0
    detector_ms, started = [], []
    for i, image in enumerate(frames):
        t = t0 + i / FPS
        frame = Frame(STUDENT, 70, i + 1, t, None, time.monotonic(), image=image)
        c = time.process_time()
        job = stream.frame_job(frame, config)
        result = pipeline.process(job)
        cpu += time.process_time() - c
        if result.detector_ran:
            detector_ms.append(result.timings_ms["detector"])
        obs = stream.absorb(result, time.monotonic())
        for event in stream.engine.evaluate(STUDENT, obs, t):
            if event.rule == "PROHIBITED_OBJECT" and event.state == "started":
                started.append(t)
    stream.forget()
    delays = []
    for k in appear:
        t_appear = t0 + k / FPS
        after = [s for s in started if t_appear <= s < t_appear + 10]
        delays.append(round(after[0] - t_appear, 2) if after else None)
    n = len(frames)
    minutes = n / FPS / 60
    return {"runs": stream.detector_runs, "per_min": stream.detector_runs / minutes, "cpu_ms": 1000 * cpu / n,
            "det_ms": statistics.mean(detector_ms) if detector_ms else 0.0, "reasons": stream.cadence.summary()["runs"],
            "delays": delays}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each clip (frame time, 2 frames/s)")
    parser.add_argument("--clips", default="steady,moving,object")
    args = parser.parse_args(argv)
    if not 5 <= args.seconds <= 1800:
        parser.error("--seconds: 5..1800")
    sys.stdout.reconfigure(line_buffering=True)

    from config_vision import load_vision_config
    from proctor.live.pipeline import FramePipeline

    config = load_vision_config()
    pipeline = FramePipeline(config)
    if not pipeline.info.get("detector", {}).get("loaded"):
        raise SystemExit(f"no detector: {pipeline.info.get('detector')}")
    pipeline.warm_up()
    frames_n = int(args.seconds * FPS)
    print(f"machine: {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f} at start; "
          f"detector {pipeline.info['detector'].get('backend')}; {frames_n} frames per clip at {FPS:g} frames/s; "
          f"DETECTOR_STEADY_INTERVAL_S={config.DETECTOR_STEADY_INTERVAL_S} FAST={config.DETECTOR_FAST_INTERVAL_S} "
          f"CHANGE_MIN={config.DETECTOR_CHANGE_MIN_INTERVAL_S} MOTION_DIFF={config.DETECTOR_MOTION_DIFF} "
          f"POSE_CHANGE_DEG={config.DETECTOR_POSE_CHANGE_DEG}")
    print(f"\n{'clip':<8} {'mode':<8} {'runs':>5} {'runs/student-min':>17} {'CPU ms/frame':>13} "
          f"{'detector ms/run':>16}  reasons / seconds from the object to PROHIBITED_OBJECT")
    for name in [c.strip() for c in args.clips.split(",") if c.strip()]:
        label, frames, appear = clip(name, frames_n)
        for mode in ("every 2", "cadence"):
            r = run(pipeline, config, frames, mode, appear)
            extra = f"  to violation {r['delays']}" if appear else ""
            print(f"{name:<8} {mode:<8} {r['runs']:5d} {r['per_min']:17.1f} {r['cpu_ms']:13.1f} {r['det_ms']:16.1f}  "
                  f"{r['reasons']}{extra}")
        print(f"{'':<8} ({label})")
    pipeline.close()
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
