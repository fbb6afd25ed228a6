"""Calibrate IDENTITY_DISTANCE_THRESHOLD on the project's real photos.

Every single-face photo in the test data (a_*, identity/*, c_1) and every face cropped from the
group photos (e_2, e_5, b_3, d_3) is one identity (obama.jpg and obama2.jpg are one person),
plus transformed copies of each (flip, darken to 30 % and 50 %, blur, tight crop, rotation
+-8 degrees, JPEG quality 30). The script embeds them all with face_identity.FaceIdentity and
prints the distance distributions of same-person and different-person pairs, the false-match
and false-reject rates at several thresholds, and the threshold it would choose.

    .venv/bin/python bench/calibrate_identity.py [--testdata ../shared/testdata] [--json out.json]

b_1 (a face on a phone held to the webcam) is left out: whose face it shows is not known.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from config_vision import load_vision_config  # noqa: E402
from face_identity import FaceIdentity  # noqa: E402
from face_pipeline import FaceAnalyzer  # noqa: E402

SINGLE_PHOTOS = {  # file -> identity label
    "a_1_webcam_woman_T1.jpg": "a_1 woman",
    "a_3_face_closeup_sergey.png": "a_3 Sergey Brin",
    "a_6_grace_hopper.jpg": "a_6 Grace Hopper",
    "a_7_astronaut.png": "a_7 Eileen Collins",
    "c_1_coco446_woman_bookshelf.jpg": "c_1 woman",
    "identity/obama.jpg": "Barack Obama",
    "identity/obama2.jpg": "Barack Obama",
    "identity/biden.jpg": "Joe Biden",
}
GROUP_PHOTOS = ["e_2_three_business.jpg", "e_5_zidane_two_men.jpg", "b_3_coco536_women_on_phones.jpg",
                "d_3_woman_holding_xo_laptop.jpg"]
THRESHOLDS = (0.4, 0.45, 0.5, 0.55, 0.6)


def _rotate(img: np.ndarray, deg: float) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.warpAffine(img, cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0), (w, h),
                          borderMode=cv2.BORDER_REPLICATE)


def _tight_crop(img: np.ndarray, box) -> np.ndarray:
    x1, y1, x2, y2 = box
    mw, mh = int((x2 - x1) * 0.15), int((y2 - y1) * 0.15)
    h, w = img.shape[:2]
    return img[max(0, y1 - mh):min(h, y2 + mh), max(0, x1 - mw):min(w, x2 + mw)].copy()


def _jpeg(img: np.ndarray, q: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


TRANSFORMS = {
    "original": lambda img, box: img,
    "flip": lambda img, box: cv2.flip(img, 1),
    "dark30": lambda img, box: (img.astype(np.float32) * 0.3).astype(np.uint8),
    "dark50": lambda img, box: (img.astype(np.float32) * 0.5).astype(np.uint8),
    "blur": lambda img, box: cv2.GaussianBlur(img, (0, 0), max(1.0, (box[2] - box[0]) / 120)),
    "crop": _tight_crop,
    "rot+8": lambda img, box: _rotate(img, 8),
    "rot-8": lambda img, box: _rotate(img, -8),
    "jpeg30": lambda img, box: _jpeg(img, 30),
}


def load_sources(testdata: Path, faces: FaceAnalyzer) -> list[tuple[str, str, np.ndarray]]:
    """(identity, source name, image holding that one face as its largest) for every face."""
    out = []
    for name, label in SINGLE_PHOTOS.items():
        img = cv2.imread(str(testdata / name), cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"missing test photo {testdata / name}")
        out.append((label, name, img))
    for name in GROUP_PHOTOS:
        img = cv2.imread(str(testdata / name), cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"missing test photo {testdata / name}")
        obs = faces.analyze(img)
        for i, (x1, y1, x2, y2) in enumerate(sorted(obs.face_boxes)):
            bw, bh = x2 - x1, y2 - y1
            h, w = img.shape[:2]
            # margin of 0.6 face widths: enough context for the detector, little of a neighbour
            crop = img[max(0, y1 - int(bh * 0.6)):min(h, y2 + int(bh * 0.6)),
                       max(0, x1 - int(bw * 0.6)):min(w, x2 + int(bw * 0.6))].copy()
            out.append((f"{name.split('_')[0]}_{name.split('_')[1]} face {i + 1}", f"{name}#{i + 1}", crop))
    return out


def rates(same: np.ndarray, diff: np.ndarray, threshold: float) -> tuple[float, float]:
    """(false-match rate, false-reject rate) at a threshold (match when distance <= threshold)."""
    fmr = float(np.mean(diff <= threshold)) if len(diff) else float("nan")
    frr = float(np.mean(same > threshold)) if len(same) else float("nan")
    return fmr, frr


def describe(values: np.ndarray) -> str:
    if not len(values):
        return "(none)"
    p = np.percentile(values, [0, 5, 50, 95, 100])
    return f"min {p[0]:.3f}  p5 {p[1]:.3f}  median {p[2]:.3f}  p95 {p[3]:.3f}  max {p[4]:.3f}  (n={len(values)})"


def main(argv: list[str] | None = None) -> int:
    default_td = Path(os.environ.get("PROCTOR_TESTDATA", REPO_ROOT.parent / "shared" / "testdata"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--testdata", type=Path, default=default_td, help=f"test photo folder (default {default_td})")
    ap.add_argument("--json", type=Path, help="also write the raw distances and figures to this JSON file")
    args = ap.parse_args(argv)

    cfg = load_vision_config()
    identity = FaceIdentity(cfg)
    faces = FaceAnalyzer(cfg, static_image_mode=True)
    sources = load_sources(args.testdata, faces)

    samples = []  # (identity, source, transform, embedding)
    failed = []
    face_px: dict[str, int] = {}
    t0 = time.perf_counter()
    for label, source, img in sources:
        box = faces.analyze(img).box
        if box is None:
            failed.append(f"{source} (no face in the crop itself)")
            continue
        face_px[source] = min(box[2] - box[0], box[3] - box[1])
        for tname, fn in TRANSFORMS.items():
            emb = identity.embed(fn(img, box))
            if emb is None:
                failed.append(f"{source} {tname}")
                continue
            samples.append((label, source, tname, emb))
    elapsed = time.perf_counter() - t0

    same_photo, same_person, diff = [], [], []
    labelled_same, labelled_diff = [], []
    for (la, sa, ta, ea), (lb, sb, tb, eb) in combinations(samples, 2):
        d = float(np.linalg.norm(ea - eb))
        pair = (d, f"{sa} [{ta}]", f"{sb} [{tb}]")
        if la != lb:
            diff.append(d)
            labelled_diff.append(pair)
        else:
            (same_photo if sa == sb else same_person).append(d)
            labelled_same.append(pair)
    same = np.array(same_photo + same_person)
    diff_arr = np.array(diff)

    identities = sorted({s[0] for s in samples})
    print(f"identities: {len(identities)}   source faces: {len(sources)}   embedded samples: {len(samples)}"
          f"   ({elapsed / max(1, len(samples)) * 1000:.0f} ms per embedding incl. face finding)")
    if failed:
        print(f"no face found in {len(failed)} transformed copies: {', '.join(failed)}")
    print(f"same-person pairs: {len(same)}  (same photo transformed: {len(same_photo)};"
          f" different photos of one person: {len(same_person)})")
    print(f"different-person pairs: {len(diff_arr)}")
    print()
    print("distance distributions")
    print(f"  same person, same photo transformed : {describe(np.array(same_photo))}")
    print(f"  same person, different photos       : {describe(np.array(same_person))}")
    print(f"  different people                    : {describe(diff_arr)}")
    print()
    print("closest different-person pairs:")
    for d, a, b in sorted(labelled_diff)[:6]:
        print(f"  {d:.3f}  {a}  vs  {b}")
    print("farthest same-person pairs:")
    for d, a, b in sorted(labelled_same, reverse=True)[:6]:
        print(f"  {d:.3f}  {a}  vs  {b}")
    print()
    print("threshold  false-match rate (FMR)     false-reject rate (FRR)    FRR on different photos only")
    table = []
    for th in THRESHOLDS:
        fmr, frr = rates(same, diff_arr, th)
        _, frr_cross = rates(np.array(same_person), diff_arr, th)
        n_fm = int(np.sum(diff_arr <= th))
        n_fr = int(np.sum(same > th))
        print(f"  {th:<7}  {fmr:7.4f} ({n_fm:>4}/{len(diff_arr)})     {frr:7.4f} ({n_fr:>4}/{len(same)})"
              f"    {frr_cross:7.4f}")
        table.append({"threshold": th, "fmr": fmr, "frr": frr, "frr_different_photos": frr_cross,
                      "false_matches": n_fm, "false_rejects": n_fr})

    big = [smp for smp in samples if face_px[smp[1]] >= cfg.ENROL_MIN_FACE_PX]
    big_same, big_diff = [], []
    for (la, sa, ta, ea), (lb, sb, tb, eb) in combinations(big, 2):
        (big_same if la == lb else big_diff).append(float(np.linalg.norm(ea - eb)))
    big_same_arr, big_diff_arr = np.array(big_same), np.array(big_diff)
    small_sources = sorted(f"{k} ({v} px)" for k, v in face_px.items() if v < cfg.ENROL_MIN_FACE_PX)
    print()
    print(f"only faces of at least ENROL_MIN_FACE_PX={cfg.ENROL_MIN_FACE_PX} px in the source "
          f"(leaves out {', '.join(small_sources)}):")
    print(f"  same person      : {describe(big_same_arr)}")
    print(f"  different people : {describe(big_diff_arr)}")
    for th in THRESHOLDS:
        fmr, frr = rates(big_same_arr, big_diff_arr, th)
        print(f"  {th:<7}  FMR {fmr:7.4f} ({int(np.sum(big_diff_arr <= th))}/{len(big_diff_arr)})"
              f"   FRR {frr:7.4f} ({int(np.sum(big_same_arr > th))}/{len(big_same_arr)})")

    # Choice: a false match lets an impostor sit the exam, a false reject asks a student to
    # look at the camera again, so false matches weigh more. If the two distributions do not
    # overlap, take the middle of the gap; otherwise take the largest of the tabled thresholds
    # with no false match at all.
    lowest_diff = float(diff_arr.min())
    highest_same = float(same.max())
    if highest_same < lowest_diff:
        chosen = round((highest_same + lowest_diff) / 2, 2)
        why = f"midway in the gap between the farthest same-person pair ({highest_same:.3f}) " \
              f"and the closest different-person pair ({lowest_diff:.3f})"
    else:
        safe = [th for th in THRESHOLDS if not np.any(diff_arr <= th)]
        chosen = max(safe) if safe else min(THRESHOLDS)
        why = f"the largest tabled threshold with no false match; the distributions overlap " \
              f"(closest different-person pair {lowest_diff:.3f}, farthest same-person pair {highest_same:.3f})"
    fmr, frr = rates(same, diff_arr, chosen)
    print()
    print(f"chosen threshold: {chosen}  ({why}); at it FMR {fmr:.4f}, FRR {frr:.4f}")
    print(f"configured IDENTITY_DISTANCE_THRESHOLD: {cfg.IDENTITY_DISTANCE_THRESHOLD}")

    if args.json:
        args.json.write_text(json.dumps({
            "identities": identities, "samples": len(samples), "failed": failed,
            "same_photo": same_photo, "same_person": same_person, "different": diff,
            "table": table, "chosen": chosen, "why": why,
        }, indent=1))
    identity.close()
    faces.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
