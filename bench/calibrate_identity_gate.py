"""Choose IDENTITY_MIN_FACE_PX: how far a small live face moves the right person's identity distance.

Every photo of identity/people (35 photos of 7 people) is placed into a 640x480 webcam frame with its
face scaled to 48-128 px (letterboxed, centred: a student further from the camera), found again by the
project's face stage (photo mode) and embedded; each is compared with every other photo's full-size
template. For each size: how much the same-person distances rise over the same pair at full size
(mean, 95th percentile, largest), how many pairs that match at full size no longer match (new false
refusals), and the closest different-person pair.

The size is chosen on one half of the people (identity_samples.SPLIT's first half) as the smallest whose
largest rise is at most RISE_BUDGET, and scored on the other half. The budget: the threshold (0.48)
sits 0.03-0.05 above the farthest same-person pairs at full size and below the closest different-person
pair (0.53), so a small face may spend about that much before it starts refusing the right student.

    .venv/bin/python bench/calibrate_identity_gate.py [--testdata DIR] [--json out.json]

About a minute on the 2-core machine.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.photos import place_face  # noqa: E402

SIZES_PX = (48, 56, 64, 72, 80, 96, 128)
RISE_BUDGET = 0.03
CHOOSE = ("p01", "p03", "p05", "p07")  # the other people (p02, p04, p06) score the choice


def measure(testdata: Path) -> list[dict]:
    """One row per (enrolment photo, probe photo): the full-size distance and the distance per probe size."""
    import cv2

    from config_vision import load_vision_config
    from face_identity import FaceIdentity, compare
    from face_pipeline import FaceAnalyzer

    people = testdata / "identity" / "people"
    cfg = load_vision_config(env={})
    identity, faces = FaceIdentity(cfg), FaceAnalyzer(cfg, static_image_mode=True)
    full, small = {}, {}
    with open(people / "identities.tsv", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            img = cv2.imread(str(people / row["file"]))
            obs = faces.analyze(img)
            if img is None or not obs.face_detected:
                print(f"skipped {row['file']}: no face", file=sys.stderr)
                continue
            full[row["file"]] = (row["person"], identity.embed(img, obs.box))
            for size in SIZES_PX:
                frame = place_face(img, obs.box, size)
                o2 = faces.analyze(frame)
                if o2.face_detected:
                    px = min(o2.box[2] - o2.box[0], o2.box[3] - o2.box[1])
                    small[(row["file"], size)] = (px, identity.embed(frame, o2.box))
    rows = []
    for probe, (person, probe_full) in full.items():
        for enrolled, (other, template) in full.items():
            if enrolled == probe:
                continue
            row = {"enrolled": enrolled, "probe": probe, "same": person == other, "person": other,
                   "full": compare(template, probe_full, cfg).distance}
            for size in SIZES_PX:
                got = small.get((probe, size))
                row[size] = None if got is None else (got[0], compare(template, got[1], cfg).distance)
            rows.append(row)
    return rows


def summarise(rows: list[dict], people: set[str], threshold: float) -> dict:
    out = {}
    for size in SIZES_PX:
        same = [r for r in rows if r["same"] and r["person"] in people and r[size] is not None]
        diff = [r for r in rows if not r["same"] and r["person"] in people and r[size] is not None]
        rise = [r[size][1] - r["full"] for r in same]
        out[size] = {
            "face_px": [min(r[size][0] for r in same), max(r[size][0] for r in same)],
            "pairs": len(same), "not_found": sum(1 for r in rows if r["same"] and r["person"] in people and r[size] is None),
            "rise_mean": round(float(np.mean(rise)), 3), "rise_p95": round(float(np.percentile(rise, 95)), 3),
            "rise_max": round(max(rise), 3),
            "new_refusals": sum(1 for r in same if r["full"] <= threshold < r[size][1]),
            "closest_different": round(min(r[size][1] for r in diff), 3),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    from config_vision import load_vision_config

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--testdata", type=Path, default=REPO_ROOT.parent / "shared" / "testdata")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    threshold = float(load_vision_config(env={}).IDENTITY_DISTANCE_THRESHOLD)
    rows = measure(args.testdata)
    everyone = {r["person"] for r in rows}
    halves = {"choose": set(CHOOSE), "score": everyone - set(CHOOSE)}
    report = {name: summarise(rows, ppl, threshold) for name, ppl in halves.items()}
    chosen = next((s for s in SIZES_PX if report["choose"][s]["rise_max"] <= RISE_BUDGET), None)
    report["chosen_min_face_px"] = chosen
    for name in halves:
        print(f"{name} ({', '.join(sorted(halves[name]))}):")
        for size, s in report[name].items():
            print(f"  {size:>3} px (measured {s['face_px'][0]}-{s['face_px'][1]}): {s['pairs']} pairs, rise mean "
                  f"{s['rise_mean']:+.3f} p95 {s['rise_p95']:+.3f} max {s['rise_max']:+.3f}, new refusals "
                  f"{s['new_refusals']}, closest different person {s['closest_different']:.3f}")
    print(f"chosen on the first half (largest rise <= {RISE_BUDGET}): {chosen} px")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
