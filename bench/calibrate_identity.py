"""Calibrate face identity (dlib, FaceRes and their fusion) on the project's real photos.

Every identity photo (identity/people: 35 photos of 7 people; identity/obama, obama2, biden) plus
four single-person photos (a_1, a_3, a_6, a_7: different people only), each under 11 transforms
(original, mirror, downscaled so the face is 160 / 112 / 80 px, darkened to 45 %, gamma 2.2,
webcam noise, JPEG 50, a 100 px webcam-like copy (gamma, noise, JPEG 60), the face box shifted by
10 % / 8 %); see bench/identity_samples.py. Every pair of samples is compared with each rule:

    dlib      euclidean distance of dlib's 128-d vectors
    faceres   cosine distance of FaceRes's 1024-d vectors
    fused-z   (dlib + k * faceres) / 2, k = the ratio of the two models' spreads (standard
              deviations) over different-person pairs: the mean of the two z-normalised distances
    fused-1   (dlib + faceres) / 2, k = 1 (the product's rule, IDENTITY_FACERES_TO_DLIB_SCALE)
    both      max(dlib / its threshold, faceres / its threshold): both models must agree

Each threshold is chosen on the pairs of one half of the people (identity_samples.SPLIT) and
scored on every other pair (the other half and the pairs across halves), then the halves are
swapped. The choice: mean - 4.26 standard deviations of the different-person distances of the
choosing half (the one-in-100,000 tail of a normal fitted to them), because a false match lets
someone else sit the exam while a refusal only asks the student again, and seven people say
little about the tail directly.

    .venv/bin/python bench/calibrate_identity.py [--testdata DIR] [--cache samples.npz] [--json out.json]

--cache keeps the embeddings (about 5 minutes to make on the 2-core machine) for reruns.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import identity_samples as ids  # noqa: E402
from config_vision import load_vision_config  # noqa: E402

TAIL_Z = 4.26          # a normal's one-in-100,000 lower tail
MIN_FACE_PX = 80       # false refusals are counted on pairs whose smaller face is at least this
SIZE_BANDS = ((0, 80), (80, 112), (112, 160), (160, 100000))


class Pairs:
    """Every pair of samples: who, which photos, face size, and both models' distances."""

    def __init__(self, samples: list[ids.Sample]) -> None:
        t = np.stack([s.template for s in samples])
        if t.shape[1] != 1152:
            raise SystemExit("the samples hold no FaceRes vectors: is models/faceres.onnx installed?")
        dl = t[:, :128]
        sq = (dl ** 2).sum(1)
        d_dlib = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * dl @ dl.T, 0))
        fr = t[:, 128:] / np.linalg.norm(t[:, 128:], axis=1, keepdims=True)
        d_fr = 1.0 - fr @ fr.T
        self.i, self.j = np.triu_indices(len(samples), 1)
        person = np.array([s.person for s in samples])
        photo = np.array([s.photo for s in samples])
        px = np.array([s.face_px for s in samples])
        self.samples = samples
        self.same = person[self.i] == person[self.j]
        self.same_photo = photo[self.i] == photo[self.j]
        self.px = np.minimum(px[self.i], px[self.j])
        self.dlib = d_dlib[self.i, self.j]
        self.faceres = d_fr[self.i, self.j]
        self.person_i, self.person_j = person[self.i], person[self.j]

    def within(self, people: tuple[str, ...]) -> np.ndarray:
        return np.isin(self.person_i, people) & np.isin(self.person_j, people)

    def name(self, k: int) -> str:
        a, b = self.samples[self.i[k]], self.samples[self.j[k]]
        return (f"{a.photo.split('/')[-1]} [{a.transform}, {a.face_px} px]  vs  "
                f"{b.photo.split('/')[-1]} [{b.transform}, {b.face_px} px]")


def choose_threshold(d: np.ndarray, same: np.ndarray) -> float:
    """The lower TAIL_Z-sigma tail of the different-person distances (see the module docstring)."""
    diff = d[~same]
    return float(diff.mean() - TAIL_Z * diff.std())


def rule_distances(pairs: Pairs, rule: str, t_dlib: float, t_fr: float, k_z: float) -> np.ndarray:
    if rule == "dlib":
        return pairs.dlib
    if rule == "faceres":
        return pairs.faceres
    if rule == "fused-z":
        return (pairs.dlib + k_z * pairs.faceres) / 2
    if rule == "fused-1":
        return (pairs.dlib + pairs.faceres) / 2
    if rule == "both":
        return np.maximum(pairs.dlib / t_dlib, pairs.faceres / t_fr)
    raise ValueError(rule)


def score(d: np.ndarray, pairs: Pairs, mask: np.ndarray, threshold: float) -> dict:
    diff = mask & ~pairs.same
    same_big = mask & pairs.same & (pairs.px >= MIN_FACE_PX)
    cross = same_big & ~pairs.same_photo
    closest = float(d[diff].min())
    out = {
        "threshold": threshold, "different_pairs": int(diff.sum()),
        "false_matches": int((d[diff] <= threshold).sum()),
        "same_pairs_80px": int(same_big.sum()), "false_refusals_80px": int((d[same_big] > threshold).sum()),
        "cross_photo_pairs_80px": int(cross.sum()), "cross_photo_refusals_80px": int((d[cross] > threshold).sum()),
        "closest_different": closest, "margin": closest - threshold,
        "margin_pct": 100 * (closest - threshold) / threshold,
        "farthest_same_80px": float(d[same_big].max()),
        "by_size": {},
    }
    for lo, hi in SIZE_BANDS:
        band = mask & pairs.same & (pairs.px >= lo) & (pairs.px < hi)
        dband = mask & ~pairs.same & (pairs.px >= lo) & (pairs.px < hi)
        out["by_size"][f"{lo}-{hi if hi < 100000 else ''}"] = (
            int((d[band] > threshold).sum()), int(band.sum()), int((d[dband] <= threshold).sum()), int(dband.sum()))
    return out


def pct(n: int, total: int) -> str:
    return f"{n}/{total} ({100 * n / total:.1f} %)" if total else "0/0"


def print_score(label: str, s: dict) -> None:
    print(f"  {label:<34} thr {s['threshold']:.3f}  false matches {pct(s['false_matches'], s['different_pairs']):>16}"
          f"  refusals >=80px {pct(s['false_refusals_80px'], s['same_pairs_80px']):>18}"
          f"  (across photos {pct(s['cross_photo_refusals_80px'], s['cross_photo_pairs_80px'])})"
          f"  closest diff {s['closest_different']:.3f}  margin {s['margin']:+.3f} ({s['margin_pct']:+.1f} %)")


def cost_ms(testdata: Path, cfg) -> dict:
    """Median per-check cost of dlib alone and dlib+FaceRes on a given face box (what the live check does)."""
    import cv2

    from face_identity import FaceIdentity
    from face_pipeline import FaceAnalyzer

    identity = FaceIdentity(cfg)
    faces = FaceAnalyzer(cfg, static_image_mode=True)
    frame = cv2.imread(str(testdata / "identity" / "obama2.jpg"))
    frame = cv2.resize(frame, (640, int(frame.shape[0] * 640 / frame.shape[1])))
    box = faces.analyze(frame).box
    template = identity.embed(frame, box)
    times = {"dlib+faceres": [], "dlib": []}
    descriptor = identity.descriptor
    for _ in range(15):
        for key in times:
            identity.descriptor = descriptor if key == "dlib+faceres" else None
            ref = template if key == "dlib+faceres" else template[:128]
            t0 = time.perf_counter()
            identity.verify(ref, frame, box=box)
            times[key].append((time.perf_counter() - t0) * 1000)
    identity.descriptor = descriptor
    identity.close()
    faces.close()
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--testdata", type=Path, default=ids.DEFAULT_TESTDATA)
    ap.add_argument("--cache", type=Path, help="embeddings file: read when present, else made and written")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    ap.add_argument("--no-cost", action="store_true", help="skip the per-check cost measurement")
    args = ap.parse_args(argv)
    cfg = load_vision_config(env={})

    if args.cache and args.cache.is_file():
        samples, missed = ids.load(args.cache), []
    else:
        from face_identity import FaceIdentity
        from face_pipeline import FaceAnalyzer

        identity, faces = FaceIdentity(cfg), FaceAnalyzer(cfg, static_image_mode=True)
        t0 = time.perf_counter()
        samples, missed = ids.build_samples(identity, faces, args.testdata, log=lambda *a: None)
        print(f"embedded {len(samples)} samples in {time.perf_counter() - t0:.0f} s")
        identity.close()
        faces.close()
        if args.cache:
            ids.save(args.cache, samples)
    pairs = Pairs(samples)
    people = sorted({s.person for s in samples})
    print(f"{len(people)} people, {len({s.photo for s in samples})} photos, {len(samples)} samples; "
          f"{int(pairs.same.sum())} same-person pairs ({int((pairs.same & ~pairs.same_photo).sum())} across photos), "
          f"{int((~pairs.same).sum())} different-person pairs")
    if missed:
        print(f"no face found in: {', '.join(missed)}")

    report: dict = {"sides": {}, "missed": missed}
    chosen: dict[str, dict[str, float]] = {}
    for side, other in (("A", "B"), ("B", "A")):
        choose = pairs.within(ids.SPLIT[side])
        held = ~choose
        sub = lambda d: choose_threshold(d[choose], pairs.same[choose])  # noqa: E731
        t_dlib, t_fr = sub(pairs.dlib), sub(pairs.faceres)
        diff = choose & ~pairs.same
        k_z = float(pairs.dlib[diff].std() / pairs.faceres[diff].std())
        print(f"\nchoose on people {side} {ids.SPLIT[side]}, score on every other pair "
              f"(people {other} and pairs across halves):")
        print(f"  on {side}: dlib threshold {t_dlib:.3f}, FaceRes threshold {t_fr:.3f}, spread ratio k {k_z:.3f}")
        chosen[side] = {"dlib": t_dlib, "faceres": t_fr, "k_z": k_z}
        report["sides"][side] = {}
        for rule in ("dlib", "faceres", "fused-z", "fused-1", "both"):
            d = rule_distances(pairs, rule, t_dlib, t_fr, k_z)
            thr = sub(d)
            chosen[side][rule] = thr
            s_choose, s_held = score(d, pairs, choose, thr), score(d, pairs, held, thr)
            print_score(f"{rule:<8} chosen side {side}", s_choose)
            print_score(f"{rule:<8} held out", s_held)
            report["sides"][side][rule] = {"choose": s_choose, "held_out": s_held}

    # The product's rule: the fused distance in dlib's units, k and threshold as configured.
    k, thr = float(cfg.IDENTITY_FACERES_TO_DLIB_SCALE), float(cfg.IDENTITY_DISTANCE_THRESHOLD)
    fused = (pairs.dlib + k * pairs.faceres) / 2
    everything = np.ones_like(pairs.same)
    print(f"\nconfigured rule: (dlib + {k} x FaceRes) / 2 <= {thr}; dlib alone (old templates) <= "
          f"{cfg.IDENTITY_DLIB_ONLY_THRESHOLD}")
    s_all = score(fused, pairs, everything, thr)
    s_dlib = score(pairs.dlib, pairs, everything, float(cfg.IDENTITY_DLIB_ONLY_THRESHOLD))
    print_score("fused, all pairs", s_all)
    print_score("dlib only, all pairs", s_dlib)
    for side in ("A", "B"):
        print_score(f"fused, held out of side {side}", score(fused, pairs, ~pairs.within(ids.SPLIT[side]), thr))
    print("\nby face size (smaller face of the pair): refusals / same pairs, false matches / different pairs")
    for name, s in (("fused", s_all), ("dlib only", s_dlib)):
        cells = "  ".join(f"{band} px: {fr}/{ns} , {fm}/{nd}" for band, (fr, ns, fm, nd) in s["by_size"].items())
        print(f"  {name:<10} {cells}")
    by_person = {}
    for person in sorted(set(pairs.person_i) | set(pairs.person_j)):
        m = pairs.same & (pairs.px >= MIN_FACE_PX) & (pairs.person_i == person)
        if m.any():
            by_person[person] = (int((fused[m] > thr).sum()), int(m.sum()))
    print("refusals by person (faces >= 80 px), fused: "
          + ", ".join(f"{k_}: {pct(*v)}" for k_, v in by_person.items()))
    report["configured"] = {"fused": s_all, "dlib_only": s_dlib, "k": k, "threshold": thr, "by_person": by_person,
                            "chosen": chosen}

    print("\nlook-alikes: the closest different-person pairs")
    for rule, d, t in (("fused", fused, thr), ("dlib", pairs.dlib, float(cfg.IDENTITY_DLIB_ONLY_THRESHOLD)),
                       ("faceres", pairs.faceres, None)):
        order = np.argsort(np.where(pairs.same, np.inf, d))[:5]
        print(f"  {rule}:")
        for n in order:
            extra = f" ({d[n] / t:.2f} x threshold)" if t else ""
            print(f"    {d[n]:.3f}{extra}  dlib {pairs.dlib[n]:.3f} FaceRes {pairs.faceres[n]:.3f}  {pairs.name(n)}")
        report.setdefault("lookalikes", {})[rule] = [(float(d[n]), pairs.name(n)) for n in order]
    print("\nfarthest same-person pairs (faces >= 80 px), fused:")
    for n in np.argsort(np.where(pairs.same & (pairs.px >= MIN_FACE_PX), -fused, np.inf))[:5]:
        print(f"    {fused[n]:.3f}  dlib {pairs.dlib[n]:.3f} FaceRes {pairs.faceres[n]:.3f}  {pairs.name(n)}")

    if not args.no_cost:
        cost = cost_ms(args.testdata, cfg)
        print(f"\nper-check cost on a 640 px frame with the face box given (median of 15): "
              f"dlib alone {cost['dlib']:.1f} ms, dlib+FaceRes {cost['dlib+faceres']:.1f} ms")
        report["cost_ms"] = cost
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
