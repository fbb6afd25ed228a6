"""Measure every loadable detector, alone and combined per class, on the test photos and transforms.

    .venv/bin/python bench/detection_quality.py [--testdata ../shared/testdata] [--models models]

Every photo of CASES is run as 11 variants (original, scale 0.5 and 1.5, letterbox/pillarbox to
4:3 and 16:9, darkened, nearly black with sensor noise, webcam noise, JPEG 40 and 70, mirrored) through each backend the registry
can load (centernet, nanodet here; yolo weights are not available). Per frame it records the best
score per class from the whole-frame pass, from the zoomed look around persons and from the
hand-guided look (hand_pipeline.py), the person scores, and the CPU milliseconds of each pass.

Thresholds are chosen on one half of the photos and scored on the other (two folds, split by
photo, every variant of a photo on the same side). The rule: the bar of a class is the highest
score that class gets on the tuning side's photos without it, plus a margin (0.02), never below
0.1. Each table row prints, per fold, the bar, hits on the tuning side, and on the held-out
side: hits, misses, false alarms on photos without the object, and the margins (weakest held-out
hit minus bar; strongest held-out false score minus bar). Combinations: "or" fires when either
model passes its own bar; "mean" averages the two scores and takes a bar by the same rule.
Prints markdown (docs/detection-quality.md quotes it); asserts nothing, times nothing but the CPU
ms per pass it prints.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from config_vision import COCO_BOOK, COCO_CELL_PHONE, COCO_LAPTOP, COCO_PERSON, load_vision_config  # noqa: E402
from person_pipeline import DetectorError, brighten_if_dark, create_detector  # noqa: E402

BANNED = (COCO_CELL_PHONE, COCO_BOOK, COCO_LAPTOP)
CLASS_NAMES = {COCO_CELL_PHONE: "phone", COCO_BOOK: "book", COCO_LAPTOP: "laptop"}
MARGIN, FLOOR = 0.02, 0.10

# (file, expected banned class or None, expected persons, split side)
CASES = [
    ("b_1_phone_held_to_webcam.jpg", COCO_CELL_PHONE, 1, "A"),
    ("b_3_coco536_women_on_phones.jpg", COCO_CELL_PHONE, 3, "B"),
    ("c_1_coco446_woman_bookshelf.jpg", COCO_BOOK, 1, "A"),
    ("d_3_woman_holding_xo_laptop.jpg", COCO_LAPTOP, 2, "B"),
    ("a_1_webcam_woman_T1.jpg", None, 1, "A"),
    ("a_3_face_closeup_sergey.png", None, 1, "B"),
    ("a_6_grace_hopper.jpg", None, 1, "A"),
    ("a_7_astronaut.png", None, 1, "B"),
    ("f_1_coco133_loft_desk_chair.jpg", None, 0, "A"),
    ("f_5_living_room_empty.jpg", None, 0, "B"),
    ("e_2_three_business.jpg", None, 3, "A"),
    ("e_5_zidane_two_men.jpg", None, 2, "B"),
]


def scaled(f):
    return lambda im: cv2.resize(im, None, fx=f, fy=f, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)


def boxed(aw, ah):
    """Pad (black bars) to the aspect aw:ah, then resize to 480 px high: a webcam's letterbox/pillarbox."""
    def tf(im):
        h, w = im.shape[:2]
        tw, th = max(w, round(h * aw / ah)), max(h, round(w * ah / aw))
        canvas = np.zeros((th, tw, 3), np.uint8)
        y, x = (th - h) // 2, (tw - w) // 2
        canvas[y:y + h, x:x + w] = im
        return cv2.resize(canvas, (round(480 * aw / ah), 480), interpolation=cv2.INTER_AREA)
    return tf


def darker(im):
    lut = np.array([min(255, round(255 * 0.6 * (i / 255) ** 2.2)) for i in range(256)], dtype=np.uint8)
    return cv2.LUT(im, lut)


def noisy(im):
    rng = np.random.default_rng(7)
    return np.clip(im.astype(np.float32) + rng.normal(0, 8, im.shape), 0, 255).astype(np.uint8)


def jpeg(q):
    return lambda im: cv2.imdecode(cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, q])[1], cv2.IMREAD_COLOR)


def nearly_black(im):
    """A covered or unlit camera: 3 % of the light plus sensor noise (the detector brightens it)."""
    rng = np.random.default_rng(1)
    return np.clip(im.astype(np.float32) * 0.03 + rng.normal(0, 2, im.shape), 0, 255).astype(np.uint8)


TRANSFORMS = {"original": lambda x: x, "scale 0.5": scaled(0.5), "scale 1.5": scaled(1.5), "box 4:3": boxed(4, 3),
              "box 16:9": boxed(16, 9), "darker": darker, "nearly black": nearly_black, "noise": noisy,
              "jpeg 40": jpeg(40), "jpeg 70": jpeg(70), "mirrored": lambda x: cv2.flip(x, 1)}


def _cpu_ms(fn, *args):
    t = time.process_time()
    out = fn(*args)
    return out, (time.process_time() - t) * 1000


def measure(det, cfg, frame):
    """Scores per look and CPU ms per pass for one frame (internals of ObjectDetector._detect)."""
    frame = brighten_if_dark(frame, cfg.DETECTOR_DARK_FRAME_MEAN, cfg.DETECTOR_BRIGHTEN_TARGET_MEAN)
    h, w = frame.shape[:2]
    raw, ms_whole = _cpu_ms(det._infer, frame)
    whole = det._postprocess(*raw, w * h)
    person_bar = det.class_threshold(load_vision_config(env={}), COCO_PERSON)
    persons = [d for d in whole if d.class_id == COCO_PERSON]
    crops_raw, ms_second = _cpu_ms(det._second_look, frame, [p for p in persons if p.score >= person_bar])
    (_, _, at_ear_0), ms_hands_0 = _cpu_ms(det.hand_look, frame, [raw, crops_raw], 0)
    (hand_raw, hands, at_ear), ms_hands = _cpu_ms(det.hand_look, frame, [raw, crops_raw], 2)

    def best(r, cid):
        sel = r[1][r[2] == cid]
        return float(sel.max()) if sel.size else 0.0

    return {
        "persons": sorted((p.score for p in persons), reverse=True),
        "whole": {c: best(raw, c) for c in BANNED},
        "second": {c: best(crops_raw, c) for c in BANNED},
        "hands": {c: best(hand_raw, c) for c in BANNED},
        "n_hands": len(hands), "at_ear": at_ear, "at_ear_no_crops": at_ear_0,
        "ms": {"whole": ms_whole, "second": ms_second, "hands": ms_hands, "hands_no_crops": ms_hands_0},
    }


LOOKS = {"whole": ("whole",), "+persons": ("whole", "second"), "+hands": ("whole", "hands"),
         "+both": ("whole", "second", "hands")}


def score(rec, cid, look):
    return max(rec[part][cid] for part in LOOKS[look])


def choose_bar(neg_scores):
    # Rounded up to a setting's two decimals, so the printed bar is the one that holds.
    return max(FLOOR, math.ceil((max(neg_scores, default=0.0) + MARGIN) * 100 - 1e-6) / 100)


def fold_table(records, backends, cases):
    """Per class, look and source: bars chosen per fold, tuning hits, held-out hits/misses/FA, margins."""
    sources = list(backends) + (["or", "mean"] if len(backends) == 2 else [])
    print("| class | source | look | fold (tune->test) | bar | tune hits | test hits | test misses | "
          "test false alarms | test margin hit / false |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for cid in BANNED:
        for look in LOOKS:
            if cid == COCO_LAPTOP and look != "whole" or cid == COCO_BOOK and look in ("+persons", "+both"):
                continue  # the pipeline takes laptops from the whole frame only, books also from hand crops
            for src in sources:
                cells = []
                for tune, test in (("A", "B"), ("B", "A")):
                    def vals(side, positive):
                        out = []
                        for (photo, expected, _, s) in cases:
                            if s != side or (expected == cid) != positive:
                                continue
                            for key, rec in records.items():
                                if key[0] != photo:
                                    continue
                                out.append((key, {b: score(rec[b], cid, look) for b in backends}))
                        return out

                    def value(v, b):
                        return v[b] if b in backends else statistics.mean(v.values())

                    bars = {}
                    for b in (backends if src == "or" else [src]):
                        bars[b] = choose_bar([value(v, b) for _, v in vals(tune, False)])

                    def fires(v):
                        return any(value(v, b) >= bars[b] for b in bars)

                    tune_pos = vals(tune, True)
                    test_pos, test_neg = vals(test, True), vals(test, False)
                    hits = sum(fires(v) for _, v in test_pos)
                    fa = sum(fires(v) for _, v in test_neg)
                    b0 = next(iter(bars))
                    m_hit = max((value(v, b0) for _, v in test_pos), default=float("nan")) - bars[b0]
                    m_fa = max((value(v, b0) for _, v in test_neg), default=float("nan")) - bars[b0]
                    bar_txt = "/".join(f"{x:.2f}" for x in bars.values())
                    cells.append((tune, test, bar_txt, sum(fires(v) for _, v in tune_pos), len(tune_pos),
                                  hits, len(test_pos), fa, len(test_neg), m_hit, m_fa))
                    print(f"| {CLASS_NAMES[cid]} | {src} | {look} | {tune}->{test} | {bar_txt} | "
                          f"{cells[-1][3]}/{len(tune_pos)} | {hits}/{len(test_pos)} | {len(test_pos) - hits} | "
                          f"{fa}/{len(test_neg)} | {m_hit:+.2f} / {m_fa:+.2f} |")
                summary[(cid, src, look)] = cells
    return summary


def person_table(records, backends, cases):
    print("| backend | fold (tune->test) | bar chosen on tune | tune counts right | test counts right |")
    print("|---|---|---|---|---|")
    grid = [round(x, 2) for x in np.arange(0.20, 0.61, 0.05)]
    for b in backends:
        for tune, test in (("A", "B"), ("B", "A")):
            def right(side, bar):
                ok = n = 0
                for (photo, _, want, s) in cases:
                    if s != side:
                        continue
                    for key, rec in records.items():
                        if key[0] == photo:
                            n += 1
                            ok += sum(x >= bar for x in rec[b]["persons"]) == want
                return ok, n
            bar = max(grid, key=lambda t: (right(tune, t)[0], -abs(t - 0.35)))
            t_ok, t_n = right(tune, bar)
            s_ok, s_n = right(test, bar)
            print(f"| {b} | {tune}->{test} | {bar:.2f} | {t_ok}/{t_n} | {s_ok}/{s_n} |")


def person_sweep(records, backends, cases):
    print("\n| backend | " + " | ".join(f"{t:.2f}" for t in (0.25, 0.30, 0.35, 0.40, 0.45)) + " |")
    print("|---|---|---|---|---|---|")
    for b in backends:
        cells = []
        for t in (0.25, 0.30, 0.35, 0.40, 0.45):
            over = under = 0
            for (photo, _, want, _) in cases:
                for key, rec in records.items():
                    if key[0] == photo:
                        got = sum(x >= t for x in rec[b]["persons"])
                        over += got > want
                        under += got < want
            cells.append(f"{over} over / {under} under")
        print(f"| {b} | " + " | ".join(cells) + " |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--testdata", default=os.environ.get("PROCTOR_TESTDATA", str(REPO_ROOT.parent / "shared" / "testdata")))
    ap.add_argument("--models", default=str(REPO_ROOT / "models"))
    args = ap.parse_args(argv)
    testdata = Path(args.testdata)

    low = dict(PERSON_CONFIDENCE=0.05, PHONE_CONFIDENCE=0.05, BOOK_CONFIDENCE=0.05, LAPTOP_CONFIDENCE=0.05,
               NANODET_PERSON_CONFIDENCE=0.05, NANODET_PHONE_CONFIDENCE=0.05, NANODET_BOOK_CONFIDENCE=0.05,
               NANODET_LAPTOP_CONFIDENCE=0.05)
    detectors = {}
    for name in ("nanodet", "yolo_onnx", "centernet", "opencv_darknet"):
        cfg = load_vision_config(env={}, DETECTOR_BACKEND=name, **low)
        try:
            detectors[name] = (create_detector(cfg, models_dir=Path(args.models)), cfg)
        except DetectorError as exc:
            print(f"- {name}: not measured ({exc})")
    backends = list(detectors)
    print(f"- measured: {', '.join(backends)}; {len(CASES)} photos x {len(TRANSFORMS)} variants; "
          f"split A = {', '.join(c[0][:3] for c in CASES if c[3] == 'A')}; B = {', '.join(c[0][:3] for c in CASES if c[3] == 'B')}\n")

    records: dict[tuple[str, str], dict] = {}
    for photo, _, _, _ in CASES:
        img = cv2.imread(str(testdata / photo), cv2.IMREAD_COLOR)
        for tname, tf in TRANSFORMS.items():
            frame = tf(img)
            records[(photo, tname)] = {b: measure(det, cfg, frame) for b, (det, cfg) in detectors.items()}

    print("## Cost: CPU ms per pass (mean over every frame; process CPU time, MediaPipe's threads included)\n")
    print("| backend | whole frame | + look around persons (0-2 crops) | + hands for phone-at-ear only | "
          "+ hand look with 0-2 crops |")
    print("|---|---|---|---|---|")
    for b in backends:
        ms = {k: statistics.mean(r[b]["ms"][k] for r in records.values())
              for k in ("whole", "second", "hands_no_crops", "hands")}
        print(f"| {b} | {ms['whole']:.0f} | {ms['second']:.0f} | {ms['hands_no_crops']:.0f} | {ms['hands']:.0f} |")
    if len(backends) == 2:
        both = sum(statistics.mean(r[b]["ms"]["whole"] for r in records.values()) for b in backends)
        print(f"| both (a per-class combination) | {both:.0f} | | | |")
    hands_found = sum(r[backends[0]]["n_hands"] > 0 for r in records.values())
    print(f"\nHands found in {hands_found}/{len(records)} frames.\n")

    print("## Persons: bar chosen on one side (most counts right), scored on the other\n")
    person_table(records, backends, CASES)
    print("\nAll photos, frames counted too many / too few persons per bar:")
    person_sweep(records, backends, CASES)

    print("\n## Prohibited objects per class, source and look (two folds, split by photo)\n")
    fold_table(records, backends, CASES)

    print("\n## Phone at the ear (hand beside a head with a phone-ish score near it)\n")
    for b in backends:
        for key, label in (("at_ear_no_crops", "no hand crops"), ("at_ear", "with 2 hand crops")):
            pos = [(k[1], r[b][key]) for k, r in records.items() if k[0].startswith("b_3")]
            neg = [k for k, r in records.items() if not k[0].startswith("b_3") and r[b][key]]
            print(f"- {b}, {label}: b_3 (women with phones at their ears) {sum(v for _, v in pos)}/{len(pos)} "
                  f"variants (missed: {', '.join(t for t, v in pos if not v) or 'none'}); any other photo: "
                  f"{len(neg)}/{len(records) - len(pos)} ({', '.join(f'{p[:3]} {t}' for p, t in neg) or 'none'})")

    print("\n## The defaults end to end (ObjectDetector.detect, config_vision defaults per backend)\n")
    print("| backend | side | object hits | misses | false alarms on photos without it | persons counted right | "
          "CPU ms per detect call |")
    print("|---|---|---|---|---|---|---|")
    for b in backends:
        det = create_detector(load_vision_config(env={}, DETECTOR_BACKEND=b), models_dir=Path(args.models))
        for side in ("A", "B"):
            hit = miss = fa = neg = pos = pr = n = 0
            ms = []
            missed = []
            for photo, expected, want, s in CASES:
                if s != side:
                    continue
                img = cv2.imread(str(testdata / photo), cv2.IMREAD_COLOR)
                for tname, tf in TRANSFORMS.items():
                    dets, t = _cpu_ms(det.detect, tf(img))
                    ms.append(t)
                    found = {d.class_id for d in dets.banned(BANNED)}
                    n += 1
                    pr += dets.person_count == want
                    for c in BANNED:
                        if c == expected:
                            pos += 1
                            hit += c in found
                            if c not in found:
                                missed.append(f"{photo[:3]} {tname}")
                        else:
                            neg += 1
                            fa += c in found
            print(f"| {b} | {side} | {hit}/{pos} | {pos - hit} | {fa}/{neg} | {pr}/{n} | {statistics.mean(ms):.0f} |")
        det.close()

    print("\n## Best score per class and variant (whole frame / + person crops / + hand crops)\n")
    print("| photo | variant | " + " | ".join(f"{b} {CLASS_NAMES[c]}" for b in backends for c in BANNED) + " |")
    print("|---|---|" + "---|" * (len(backends) * len(BANNED)))
    for (photo, tname), rec in records.items():
        cells = []
        for b in backends:
            for c in BANNED:
                r = rec[b]
                cells.append(f"{r['whole'][c]:.2f}/{r['second'][c]:.2f}/{r['hands'][c]:.2f}")
        print(f"| {photo[:3]} | {tname} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
