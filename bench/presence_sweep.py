"""Presence sweep: is "face present" decided by the examinee's face, and does NO_FACE fire when they leave?

    .venv/bin/python bench/presence_sweep.py [--frames 8] [--quick]

Three parts, each run with the project's presence settings ("now") and with the permissive
settings that reproduce the face stage before the presence decision existed ("before": any FaceMesh
fit or face detection made the examinee present, small background faces counted at once):

1. Empty scenes (tests/presence_scenes.py: the photos with nobody in them and every person photo with
   the people covered) x webcam transforms (letterbox/pillarbox 4:3 and 16:9, scale 0.5-1.5, gamma,
   noise, JPEG 40-90, mirrored), FRAMES frames each in video mode: false "present" frames.
2. Person photos (testdata's person photos and the identity photos) x the same transforms: frames
   where a real examinee's face was missed ("absent" frames), the price of the stricter decision.
3. Clips examinee -> empty room -> examinee at 2 fps (an examinee's head and shoulders composited into each
   empty scene) through the decision engine: NO_FACE must fire
   exactly once per clip, TIME_NO_FACE_S to TIME_NO_FACE_S + 1.5 s after the person left.

Prints markdown tables; asserts nothing (tests/vision/test_face_presence.py pins the cases).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from config_vision import load_vision_config  # noqa: E402
from decision_engine import DecisionEngine, FrameObservation  # noqa: E402
from face_pipeline import FaceAnalyzer  # noqa: E402
from tests.presence_scenes import (EXAMINEES, PERSON_PHOTOS, TRANSFORMS, apply, composite,  # noqa: E402
                                   empty_scenes, examinee_clip, load, resize_width)
from tests.vision.conftest import TESTDATA  # noqa: E402

BEFORE = dict(PRESENCE_CONFIRM_CONFIDENCE=0.05, PRESENCE_DETECTION_CONFIDENCE=0.05, PRESENCE_KEEP_CONFIDENCE=0.05,
              PRESENCE_MIN_FACE_FRACTION=0.0, FACE_SECONDARY_PERSIST_RUNS=1)


def _run(cfg, scene, tf, frames: int, seed: int) -> tuple[list[bool], int, float]:
    """(present on each frame, NO_FACE starts, mean ms per frame) for one scene under one
    transform, as a stream at 2 frames/s through the decision engine."""
    rng = np.random.default_rng(seed)
    present, spent, no_face = [], 0.0, 0
    engine = DecisionEngine(cfg)
    with FaceAnalyzer(cfg) as faces:
        for i in range(frames):
            frame = apply(scene, tf, rng)
            t = time.perf_counter()
            obs = faces.analyze(frame)
            spent += time.perf_counter() - t
            present.append(bool(obs.face_detected))
            no_face += sum(1 for ev in engine.evaluate("s", FrameObservation(t=i / 2, face=obs), i / 2)
                           if ev.rule == "NO_FACE" and ev.state == "started")
    return present, no_face, spent * 1000 / frames


def sweep(configs: dict, scenes: list, frames: int, *, count_present: bool) -> None:
    """Empty scenes: frames judged present. Person scenes: frames judged absent after the first (a
    face only detectors see needs two looks), and NO_FACE started on a person who never left."""
    names = list(configs)
    what = "present" if count_present else "absent (after frame 1) / false NO_FACE"
    print("| scene | " + " | ".join(f"{n}: {what}" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    totals = {n: [0, 0, 0] for n in names}
    cost = {n: [] for n in names}
    for label, scene in scenes:
        cells = []
        for n in names:
            bad, fired, total = 0, 0, 0
            for k, tf in enumerate(TRANSFORMS):
                present, no_face, ms = _run(configs[n], scene, tf, frames, seed=k)
                judged = present if count_present else present[1:]
                bad += sum(judged) if count_present else judged.count(False)
                total += len(judged)
                fired += no_face
                cost[n].append(ms)
            totals[n][0] += bad
            totals[n][1] += total
            totals[n][2] += fired
            cells.append(f"{bad}/{total}" + ("" if count_present else f" / {fired}"))
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("| **all** | " + " | ".join(
        f"**{b}/{t}** ({100 * b / max(1, t):.1f} %)" + ("" if count_present else f" / **{f}**")
        for b, t, f in totals.values()) + " |")
    print("\nface stage, mean ms per frame: " + ", ".join(f"{n} {np.mean(c):.1f}" for n, c in cost.items()))


def clips(configs: dict) -> None:
    print("| clip (examinee -> empty -> examinee) | transform | "
          + " | ".join(f"{n}: NO_FACE started at (s after leaving)" for n in configs) + " |")
    print("|---|---|" + "---|" * len(configs))
    for index, (label, room) in enumerate(empty_scenes()):
        examinee = EXAMINEES[index % len(EXAMINEES)]
        for tf in (TRANSFORMS[0], TRANSFORMS[1], TRANSFORMS[6], TRANSFORMS[10]):
            frames = examinee_clip(room, examinee, tf, before_s=5, empty_s=8, after_s=5)
            left = next(t for t, present, _ in frames if not present)
            cells = []
            for cfg in configs.values():
                engine = DecisionEngine(cfg)
                fired = []
                with FaceAnalyzer(cfg) as faces:
                    for t, _, frame in frames:
                        obs = faces.analyze(frame)
                        for ev in engine.evaluate("clip", FrameObservation(t=t, face=obs), t):
                            if ev.rule == "NO_FACE" and ev.state == "started":
                                fired.append(round(t - left, 1))
                cells.append(", ".join(map(str, fired)) or "never")
            print(f"| {label} with {Path(examinee).name} | {tf.name} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=8, help="frames per scene and transform (default 8)")
    p.add_argument("--quick", action="store_true", help="person photos from testdata only (not the identity set)")
    args = p.parse_args(argv)
    configs = {"now": load_vision_config(), "before": load_vision_config(**BEFORE)}
    print(f"# Presence sweep, {time.strftime('%Y-%m-%d')}, {args.frames} frames per scene and transform, "
          f"{len(TRANSFORMS)} transforms\n")
    print("## 1. Empty scenes: frames judged 'present' (should be 0)\n")
    sweep(configs, empty_scenes(), args.frames, count_present=True)
    # Examinees as a webcam sees them (head and shoulders composited into each empty scene), then the
    # testdata photos as they are (some show people far from the camera: c_1, b_3, e_2 have faces
    # of 25-50 px in a 480-px frame, smaller than an examinee at a webcam) and the identity photos.
    people = [(f"{Path(EXAMINEES[i % len(EXAMINEES)]).name} in {label.split()[0]}",
               composite(room, EXAMINEES[i % len(EXAMINEES)])) for i, (label, room) in enumerate(empty_scenes())]
    people += [(f"{n}", resize_width(load(n), 640)) for n in PERSON_PHOTOS]
    if not args.quick:
        people += [(p.name, resize_width(cv2.imread(str(p)), 640))
                   for p in sorted((Path(TESTDATA) / "identity" / "people").glob("*.jpg"))]
    print("\n## 2. Person photos, 5 s at 2 frames/s: frames judged 'absent' (the examinee missed), and NO_FACE "
          "started though nobody left\n")
    sweep(configs, people, max(args.frames, 10), count_present=False)
    print(f"\n## 3. Clips at 2 fps (TIME_NO_FACE_S = {configs['now'].TIME_NO_FACE_S})\n")
    clips(configs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
