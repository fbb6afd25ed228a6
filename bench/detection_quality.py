"""Measure prohibited-object and person detection on the real test photos, before and after.

    .venv/bin/python bench/detection_quality.py [--testdata ../shared/testdata] [--models ../shared/models]

"before" is the plain use of the CenterNet model as first tried: the frame stretched to 512x512,
one pass, one score threshold (0.3) for every class. "after" is person_pipeline's detector with
the project defaults: letterboxed input, per-class thresholds, per-class NMS, duplicate/tiny
person suppression and the zoomed second look around persons. "evidence" feeds five slightly
different frames (small shifts, brightness changes, JPEG re-encoding: what a webcam stream gives)
through ObjectEvidence (k of n from config) and reports what is confirmed.

Every case is run on the original photo and on transformed copies (darker, mirrored, half size).
Prints markdown tables (the figures in docs/detection-quality.md come from this script); it
asserts nothing and times nothing but the mean milliseconds per detector call it prints.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from config_vision import COCO_BOOK, COCO_CELL_PHONE, COCO_LAPTOP, load_vision_config  # noqa: E402
from person_pipeline import COCO_NAMES, Detections, ObjectEvidence, create_detector  # noqa: E402

BANNED = (COCO_CELL_PHONE, COCO_BOOK, COCO_LAPTOP)

# (file, expected banned class or None for a clean frame, expected persons or None if not judged)
CASES = [
    ("b_1_phone_held_to_webcam.jpg", COCO_CELL_PHONE, 1),
    ("b_3_coco536_women_on_phones.jpg", COCO_CELL_PHONE, 3),
    ("c_1_coco446_woman_bookshelf.jpg", COCO_BOOK, 1),
    ("d_3_woman_holding_xo_laptop.jpg", COCO_LAPTOP, 2),
    ("a_1_webcam_woman_T1.jpg", None, 1),
    ("a_3_face_closeup_sergey.png", None, 1),
    ("a_6_grace_hopper.jpg", None, 1),
    ("a_7_astronaut.png", None, 1),
    ("f_1_coco133_loft_desk_chair.jpg", None, 0),
    ("f_5_living_room_empty.jpg", None, 0),
    ("e_2_three_business.jpg", None, 3),
    ("e_5_zidane_two_men.jpg", None, 2),
]


def darker(img):
    # Gamma 2.2 and a 0.6 gain: a dim room, mean luma falls to roughly a third.
    lut = np.array([min(255, round(255 * 0.6 * (i / 255) ** 2.2)) for i in range(256)], dtype=np.uint8)
    return cv2.LUT(img, lut)


def flipped(img):
    return cv2.flip(img, 1)


def half(img):
    h, w = img.shape[:2]
    return cv2.resize(img, (max(2, w // 2), max(2, h // 2)), interpolation=cv2.INTER_AREA)


TRANSFORMS = {"original": lambda x: x, "darker": darker, "mirrored": flipped, "half size": half}


def stream_of(img, n=5, seed=0):
    """n frames of one scene as a webcam would give them: shifted a few pixels, brightness
    varying, JPEG-compressed (each frame 12 px smaller than the photo)."""
    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    frames = []
    for _ in range(n):
        # Shift by cropping a window that moves up to 6 px (no made-up border pixels).
        dx, dy = (int(v) for v in rng.integers(0, 13, size=2))
        f = img[dy:h - 12 + dy, dx:w - 12 + dx]
        f = cv2.convertScaleAbs(f, alpha=float(rng.uniform(0.9, 1.1)), beta=float(rng.uniform(-8, 8)))
        ok, buf = cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 80])
        frames.append(cv2.imdecode(buf, cv2.IMREAD_COLOR))
    return frames


class BaselineCenterNet:
    """The first, plain use of the model: stretch to 512x512, one pass, one threshold."""

    def __init__(self, model_path: Path, threshold: float = 0.3):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        self.threshold = threshold

    def detect(self, img) -> Detections:
        from person_pipeline import Detection

        h, w = img.shape[:2]
        x = cv2.resize(img, (512, 512))[:, :, ::-1].astype(np.float32)[None]
        rows = self.session.run(None, {"tower_0/images:0": x})[0][0]
        items = []
        for x1, y1, x2, y2, s, c in rows:
            c = int(round(c))
            if s >= self.threshold and 0 <= c < 80:
                items.append(Detection(c, COCO_NAMES[c], float(s),
                                       (x1 * w / 512, y1 * h / 512, x2 * w / 512, y2 * h / 512)))
        return Detections(tuple(items), "centernet-plain", (w, h))


def summarise(dets: Detections, expected):
    banned = dets.banned(BANNED)
    found = {d.class_id for d in banned}
    if expected is None:
        verdict = "ok" if not found else "FALSE ALARM"
    else:
        verdict = "hit" if expected in found else "miss"
        if found - {expected}:
            verdict += " +other"
    text = ", ".join(f"{d.label} {d.score:.2f}" for d in sorted(banned, key=lambda d: -d.score)[:3]) or "-"
    return verdict, text


def max_scores(det_low, img):
    dets = det_low.detect(img)
    return {c: max((d.score for d in dets.items if d.class_id == c), default=0.0) for c in BANNED}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--testdata", default=os.environ.get("PROCTOR_TESTDATA", str(REPO_ROOT.parent / "shared" / "testdata")))
    ap.add_argument("--models", default=os.environ.get("PROCTOR_MODEL_MIRROR", str(REPO_ROOT.parent / "shared" / "models")))
    args = ap.parse_args(argv)
    testdata, models = Path(args.testdata), Path(args.models)

    cfg = load_vision_config(env={}, DETECTOR_BACKEND="centernet")
    after = create_detector(cfg, models_dir=models)
    single = create_detector(cfg.with_overrides(DETECTOR_SECOND_LOOK=False), models_dir=models)
    low = create_detector(cfg.with_overrides(PHONE_CONFIDENCE=0.05, BOOK_CONFIDENCE=0.05, LAPTOP_CONFIDENCE=0.05),
                          models_dir=models)
    before = BaselineCenterNet(Path(after.info()["model_path"]))

    print(f"detector: {after.info()}")
    print(f"thresholds: person {cfg.PERSON_CONFIDENCE}, phone {cfg.PHONE_CONFIDENCE}, book {cfg.BOOK_CONFIDENCE}, "
          f"laptop {cfg.LAPTOP_CONFIDENCE}; evidence {cfg.OBJECT_EVIDENCE_MIN_HITS} of {cfg.OBJECT_EVIDENCE_WINDOW_RUNS}\n")

    print("## Highest score per prohibited class (pipeline with the second look, thresholds 0.05)\n")
    print("| image | variant | phone | book | laptop |")
    print("|---|---|---|---|---|")
    for name, expected, _ in CASES:
        img = cv2.imread(str(testdata / name), cv2.IMREAD_COLOR)
        for tname, tf in TRANSFORMS.items():
            ms = max_scores(low, tf(img))
            cells = [f"**{ms[c]:.2f}**" if c == expected else f"{ms[c]:.2f}" for c in BANNED]
            print(f"| {name[:3]}{name[3:].split('.')[0][:24]} | {tname} | " + " | ".join(cells) + " |")

    print("\n## Per image: before / after (single frame) / evidence over a 5-frame stream\n")
    print("| image | variant | expect | persons before -> after | before | after | after: found | evidence |")
    print("|---|---|---|---|---|---|---|---|")
    tally = {k: [0, 0] for k in ("before", "after", "evidence")}  # [good, total] for object cases
    fa = {k: [0, 0] for k in ("before", "after", "evidence")}      # [false alarms, clean total]
    person_ok = {"before": [0, 0], "after": [0, 0]}
    times = {"before": [], "single": [], "after": []}
    stream_fa = {"raw": 0, "confirmed": 0, "frames": 0}
    stream_hit = {"raw": 0, "confirmed": 0, "frames": 0}
    for name, expected, persons in CASES:
        img = cv2.imread(str(testdata / name), cv2.IMREAD_COLOR)
        for tname, tf in TRANSFORMS.items():
            frame = tf(img)
            t0 = time.perf_counter(); b = before.detect(frame); times["before"].append(time.perf_counter() - t0)
            t0 = time.perf_counter(); single.detect(frame); times["single"].append(time.perf_counter() - t0)
            t0 = time.perf_counter(); a = after.detect(frame); times["after"].append(time.perf_counter() - t0)
            vb, _ = summarise(b, expected)
            va, ta = summarise(a, expected)
            ev = ObjectEvidence.from_config(cfg)
            confirmed_runs = 0
            for f in stream_of(frame):
                raw = after.detect(f)
                raw_found = {d.class_id for d in raw.banned(BANNED)}
                out = ev.update(raw)
                if out.banned(BANNED):
                    confirmed_runs += 1
                if expected is None:
                    stream_fa["raw"] += bool(raw_found)
                    stream_fa["confirmed"] += bool(out.banned(BANNED))
                    stream_fa["frames"] += 1
                else:
                    stream_hit["raw"] += expected in raw_found
                    stream_hit["confirmed"] += expected in {d.class_id for d in out.banned(BANNED)}
                    stream_hit["frames"] += 1
            conf = sorted(ev.confirmed)
            if expected is None:
                ve = "ok" if not conf else "FALSE ALARM " + ",".join(COCO_NAMES[c] for c in conf)
            else:
                ve = (f"confirmed ({confirmed_runs}/5 runs)" if expected in conf else "not confirmed")
            for key, v in (("before", vb), ("after", va), ("evidence", ve)):
                if expected is None:
                    fa[key][1] += 1
                    fa[key][0] += not v.startswith("ok")
                else:
                    tally[key][1] += 1
                    tally[key][0] += v.startswith("hit") or v.startswith("confirmed")
            if persons is not None:
                for key, d in (("before", b), ("after", a)):
                    person_ok[key][1] += 1
                    person_ok[key][0] += d.person_count == persons
            exp = COCO_NAMES[expected] if expected is not None else "clean"
            print(f"| {name.split('.')[0][:28]} | {tname} | {exp} | {b.person_count} -> {a.person_count} (want {persons}) "
                  f"| {vb} | {va} | {ta} | {ve} |")

    print("\n## Totals\n")
    for key in ("before", "after", "evidence"):
        good, total = tally[key]
        bad, clean = fa[key]
        print(f"- {key}: prohibited object found in {good}/{total} object cases; false alarms in {bad}/{clean} clean cases")
    print(f"- stream frames, clean scenes: a prohibited object in {stream_fa['raw']}/{stream_fa['frames']} frames "
          f"from the detector alone, {stream_fa['confirmed']}/{stream_fa['frames']} after ObjectEvidence")
    print(f"- stream frames, object scenes: the object reported in {stream_hit['raw']}/{stream_hit['frames']} frames "
          f"from the detector alone, {stream_hit['confirmed']}/{stream_hit['frames']} after ObjectEvidence")
    for key in ("before", "after"):
        print(f"- persons counted right ({key}): {person_ok[key][0]}/{person_ok[key][1]}")
    print(f"- mean ms per detect call on this machine ({len(times['after'])} calls each, 1 thread): "
          + ", ".join(f"{k} {1000 * statistics.mean(v):.0f}" for k, v in
                      (("before (plain)", times["before"]), ("after without second look", times["single"]),
                       ("after with second look", times["after"]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
