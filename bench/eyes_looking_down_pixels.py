"""Can the pixels of the eye region tell open eyes under low lids from closed eyes? (issue 15, not shipped)

A student looking down at the keyboard with the head level shows the upper lids low over open eyes,
and the eye aspect ratio can read as low as a blink's. This probe measures, on real photos, whether
what lies between the lids (a dark iris and bright sclera, or skin and a lash line) separates the two
where the EAR cannot.

The 42 one-person photos of the identity set (identity_samples.load_photos), at full size and placed at
120 and 96 px face size (JPEG 70, as bench/eyes_face_size.py), in three kinds:
  open      the photo as it is;
  down_*    ``nod`` (tests/vision/test_eyes_looking_down.py) with no head turn, the upper lids lowered
            0.6 / 0.75 / 0.85 of the lid opening and the irises 0.5 / 0.6 / 0.7 of their radius;
  closed_*  ``squash_eyes`` (tests/vision/test_face_pipeline.py) with the opening shrunk to 0 / 0.1.
Only frames whose EAR reads closed (the larger EAR under EAR_THRESHOLD) matter; for those, each measure's
range for looking down and for closed, and the errors of the best single bar fitted on all of them
(an optimistic figure: a bar that fails even fitted on everything cannot pass on held-out people).

    .venv/bin/python bench/eyes_looking_down_pixels.py [--testdata DIR]

About three minutes on the 2-core machine.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

_IRISES = ((468, 469, 470, 471, 472), (473, 474, 475, 476, 477))
DOWN = {"down_l60": (0.6, 0.5), "down_l75": (0.75, 0.6), "down_l85": (0.85, 0.7)}
CLOSED = {"closed_k0": 0.0, "closed_k10": 0.1}
MEASURES = {
    "iris_dark": "darker half of the visible iris disc, (skin - it) / skin",
    "outline_dark": "darkest third of the lid outline, (skin - it) / skin",
    "gradient_x": "horizontal share of the gradient energy in the outline (iris edges)",
    "bright": "brightest tenth of the outline / skin (sclera)",
    "iris_visible": "share of the iris disc inside the lid outline",
}


def eye_measures(frame: np.ndarray, landmarks) -> dict[str, float]:
    """Each measure for both eyes (the larger, or the mean for the gradient share and brightness)."""
    from tests.vision.test_eyes_looking_down import _LOWER_LIDS, _UPPER_LIDS

    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32)
    pts = np.asarray(landmarks)
    per_eye = []
    for upper, lower, iris in zip(_UPPER_LIDS, _LOWER_LIDS, _IRISES):
        outline = np.concatenate([pts[list(lower)], pts[list(upper)][::-1]])
        width = float(np.hypot(*(pts[lower[0]] - pts[lower[-1]])))
        centre = pts[iris[0]]
        radius = float(np.mean([np.hypot(*(pts[i] - centre)) for i in iris[1:]]))
        x1, y1 = (max(int(v), 0) for v in np.floor(outline.min(0) - width))
        x2, y2 = (int(v) for v in np.ceil(outline.max(0) + width))
        k = max(1, int(np.ceil(40 / max(width, 1.0))))  # masks drawn on a copy at least 40 px per eye
        sub = cv2.resize(grey[y1:y2, x1:x2], None, fx=k, fy=k, interpolation=cv2.INTER_LINEAR)
        inside = np.zeros(sub.shape, np.uint8)
        cv2.fillPoly(inside, [np.int32(np.round((outline - [x1, y1]) * k))], 1)
        disc = np.zeros_like(inside)
        cv2.circle(disc, tuple(int(v) for v in np.round((centre - [x1, y1]) * k)), int(round(radius * k)), 1, -1)
        iris_in = (inside & disc).astype(bool)
        low = pts[list(lower)]
        skin_band = grey[int(low[:, 1].max() + 0.15 * width):int(low[:, 1].max() + 0.45 * width) + 1,
                         int(low[:, 0].min()):int(low[:, 0].max()) + 1]
        skin = max(float(np.median(skin_band)), 1.0) if skin_band.size else 1.0
        vals = np.sort(sub[iris_in])
        iris_dark = float(vals[:max(1, len(vals) // 2)].mean()) if len(vals) >= 3 else skin
        out = np.sort(sub[inside.astype(bool)]) if inside.any() else np.array([skin])
        gx = cv2.Sobel(sub, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(sub, cv2.CV_32F, 0, 1, ksize=3)
        near = cv2.dilate(inside, np.ones((3, 3), np.uint8)).astype(bool)
        ex, ey = float((gx[near] ** 2).sum()), float((gy[near] ** 2).sum())
        per_eye.append({
            "iris_dark": (skin - iris_dark) / skin,
            "outline_dark": (skin - float(out[:max(1, len(out) // 3)].mean())) / skin,
            "gradient_x": ex / max(ex + ey, 1e-6),
            "bright": float(np.percentile(out, 90)) / skin,
            "iris_visible": float(iris_in.sum()) / max(1, int(disc.sum())),
        })
    both = {k: max(e[k] for e in per_eye) for k in ("iris_dark", "outline_dark", "iris_visible")}
    both.update({k: float(np.mean([e[k] for e in per_eye])) for k in ("gradient_x", "bright")})
    return both


def measure(testdata: Path) -> list[dict]:
    from mediapipe.python.solutions import face_mesh

    from config_vision import load_vision_config
    from eyes_face_size import jpeg, placed
    from face_pipeline import FaceAnalyzer
    from identity_samples import load_photos
    from tests.vision.test_eyes_looking_down import nod
    from tests.vision.test_face_pipeline import squash_eyes

    cfg = load_vision_config(env={})
    faces = FaceAnalyzer(cfg, static_image_mode=True)
    mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True)
    rows = []
    for person, name, img in load_photos(testdata):
        obs = faces.analyze(img)
        h, w = img.shape[:2]
        res = mesh.process(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        if not obs.face_detected or not res.multi_face_landmarks:
            print(f"skipped {name}: no face", file=sys.stderr)
            continue
        p3 = np.array([(p.x * w, p.y * h, p.z * w) for p in res.multi_face_landmarks[0].landmark])
        kinds = {"open": img}
        kinds.update({k: nod(img, p3, 0, lid, iris) for k, (lid, iris) in DOWN.items()})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # squash_eyes divides by keep=0 in a branch it does not take
            kinds.update({k: squash_eyes(img, obs, keep=keep) for k, keep in CLOSED.items()})
        for kind, src in kinds.items():
            for size in ("full", 120, 96):
                frame = src if size == "full" else jpeg(placed(src, obs.box, size))
                o = faces.analyze(frame)
                if not o.face_detected or len(o.landmarks) < 478:
                    continue
                rows.append({"photo": name, "kind": kind, "size": size, "ear": max(o.ear_left, o.ear_right),
                             **eye_measures(frame, o.landmarks)})
    mesh.close()
    faces.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    from config_vision import load_vision_config
    from identity_samples import DEFAULT_TESTDATA

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--testdata", type=Path, default=DEFAULT_TESTDATA)
    args = ap.parse_args(argv)
    bar = float(load_vision_config(env={}).EAR_THRESHOLD)
    rows = measure(args.testdata)
    for kind in ("open", *DOWN, *CLOSED):
        sel = [r for r in rows if r["kind"] == kind]
        print(f"{kind:>10}: {len(sel)} frames, EAR reads closed in {sum(1 for r in sel if r['ear'] < bar)}")
    low = [r for r in rows if r["ear"] < bar]
    down = [r for r in low if r["kind"] in DOWN]
    shut = [r for r in low if r["kind"] in CLOSED]
    print(f"\nFrames whose EAR reads closed: looking down {len(down)} ({len({r['photo'] for r in down})} photos),"
          f" closed {len(shut)} ({len({r['photo'] for r in shut})} photos)")
    print(f"{'measure':>13} | {'looking down min-median-max':>28} | {'closed min-median-max':>22} | best bar (fitted on all)")
    for key, what in MEASURES.items():
        d = np.array([r[key] for r in down])
        c = np.array([r[key] for r in shut])
        errors = min(min(int(np.sum(d < t) + np.sum(c >= t)), int(np.sum(d >= t) + np.sum(c < t)))
                     for t in np.unique(np.concatenate([d, c])))
        print(f"{key:>13} | {d.min():>8.2f} {np.median(d):>9.2f} {d.max():>9.2f} | {c.min():>6.2f} {np.median(c):>7.2f}"
              f" {c.max():>7.2f} | {errors} of {len(d) + len(c)} wrong   ({what})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
