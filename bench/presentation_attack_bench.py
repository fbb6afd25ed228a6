"""Presentation attacks (a face on a phone screen or a printed photo): cases, threshold choice, tables.

    .venv/bin/python bench/presentation_attack_bench.py [--testdata ../shared/testdata] [--quick]

Cases, all from the real photos in ../shared/testdata (transformed, never drawn):
- real: every photo with a face (a_*, b_3, c_1, d_3, e_*, identity/*, identity/people/*), untransformed
  and through TRANSFORMS (scale, JPEG 40/70, sensor noise, darkening, mirror, crop shifts);
- b_1 (the one real spoof: a phone showing a face, held to the webcam) through the same transforms;
- screen: each real photo's face perspective-warped onto b_1's phone screen (the screen quad below,
  measured on b_1), as is and with the phone cut out and pasted onto the empty rooms f_1 / f_5;
- print: each real photo's face with a white paper margin, perspective-warped (tilted) into f_1 / f_5.
Split by source photo: side A (every other photo in name order) chooses PA_FRAME_SCORE_THRESHOLD,
side B (the rest, plus b_1 and everything made from b_1's own face) is scored with it. Prints the
tables for docs/presentation-attack.md, the margins and the mean cost per assess() call. Asserts nothing.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) in sys.path:
    sys.path.remove(str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT))  # the root module, not this script, is `presentation_attack`

SPOOF_PHOTO = "b_1_phone_held_to_webcam.jpg"
EMPTY_ROOMS = ("f_1_coco133_loft_desk_chair.jpg", "f_5_living_room_empty.jpg")
# b_1 (480x640): the phone's screen and the whole phone (bezel included), corners TL, TR, BR, BL,
# read off the image's straight edges (LSD segments) by hand.
B1_SCREEN_QUAD = np.float32([(134, 96), (462, 107), (377, 634), (74, 562)])
B1_PHONE_QUAD = np.float32([(126, 60), (478, 68), (396, 640), (52, 600)])


def real_photo_names(testdata: Path) -> list[str]:
    names = [p.name for p in sorted(testdata.glob("*.*")) if p.suffix in (".jpg", ".png")
             and p.name[0] in "acde" or p.name.startswith("b_3")]
    names += [f"identity/{p.name}" for p in sorted((testdata / "identity").glob("*.jpg"))]
    names += [f"identity/people/{p.name}" for p in sorted((testdata / "identity" / "people").glob("*.jpg"))]
    return names


def side_of(name: str, names: list[str]) -> str:
    return "A" if sorted(names).index(name) % 2 == 0 else "B"


# -- transforms of a whole frame (webcam-like) -------------------------------------------------
def _jpeg(img: np.ndarray, q: int) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])[1], cv2.IMREAD_COLOR)


def _noise(img: np.ndarray, sigma: float = 6.0) -> np.ndarray:
    rng = np.random.default_rng(7)
    return np.clip(img.astype(np.float32) + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def _scale(img: np.ndarray, f: float) -> np.ndarray:
    return cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)


def _crop(img: np.ndarray, fx: float, fy: float, keep: float = 0.85) -> np.ndarray:
    h, w = img.shape[:2]
    cw, ch = int(w * keep), int(h * keep)
    x, y = int((w - cw) * fx), int((h - ch) * fy)
    return img[y:y + ch, x:x + cw].copy()


def _darken(img: np.ndarray) -> np.ndarray:
    return (255.0 * (img / 255.0) ** 1.8 * 0.8).astype(np.uint8)


TRANSFORMS = {
    "scale0.6": lambda im: _scale(im, 0.6),
    "scale1.4": lambda im: _crop(_scale(im, 1.4), 0.5, 0.5, 0.72),
    "jpeg40": lambda im: _jpeg(im, 40),
    "jpeg70": lambda im: _jpeg(im, 70),
    "noise6": _noise,
    "dark": _darken,
    "mirror": lambda im: cv2.flip(im, 1),
    "crop_tl": lambda im: _crop(im, 0.0, 0.0),
    "crop_br": lambda im: _crop(im, 1.0, 1.0),
}


# -- spoofs made from real photos ---------------------------------------------------------------
def face_crop(img: np.ndarray, box, aspect: float) -> np.ndarray:
    """A crop around the face (w/h = aspect) as a phone or a print would show it: face about 60 % of the width."""
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + 0.1 * (y2 - y1)
    w = (x2 - x1) / 0.6
    h = w / aspect
    pad = int(max(w, h))
    big = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    xa, ya = int(cx - w / 2) + pad, int(cy - h / 2) + pad
    return big[ya:ya + int(h), xa:xa + int(w)].copy()


def _warp_into(dst: np.ndarray, src: np.ndarray, quad: np.ndarray) -> np.ndarray:
    h, w = src.shape[:2]
    m = cv2.getPerspectiveTransform(np.float32([(0, 0), (w, 0), (w, h), (0, h)]), np.float32(quad))
    out_size = (dst.shape[1], dst.shape[0])
    warped = cv2.warpPerspective(src, m, out_size, flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), m, out_size)
    out = dst.copy()
    out[mask > 127] = warped[mask > 127]
    return out


def screen_composite(b1: np.ndarray, face_img: np.ndarray, box) -> np.ndarray:
    """b_1 with its screen showing another photo's face (perspective-warped onto the screen quad)."""
    q = B1_SCREEN_QUAD
    aspect = float(np.linalg.norm(q[1] - q[0]) / np.linalg.norm(q[3] - q[0]))
    return _warp_into(b1, face_crop(face_img, box, aspect), q)


def phone_on_background(phone_frame: np.ndarray, room: np.ndarray, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """The phone region of a b_1-like frame cut out and pasted (scaled, moved) onto an empty room (640x480)."""
    room = cv2.resize(room, (640, 480), interpolation=cv2.INTER_LINEAR)
    centre = B1_PHONE_QUAD.mean(axis=0)
    target = (B1_PHONE_QUAD - centre) * scale + np.float32([320 + shift[0] * 640, 240 + shift[1] * 480])
    m = cv2.getPerspectiveTransform(B1_PHONE_QUAD, target)
    warped = cv2.warpPerspective(phone_frame, m, (640, 480), flags=cv2.INTER_AREA)
    mask = np.zeros(phone_frame.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, B1_PHONE_QUAD.astype(np.int32), 255)
    mask = cv2.warpPerspective(mask, m, (640, 480))
    out = room.copy()
    out[mask > 127] = warped[mask > 127]
    return out


def printed_photo(face_img: np.ndarray, box, room: np.ndarray, tilt: float) -> np.ndarray:
    """A print of the face (white paper margin, 7 % of its width) held tilted in front of an empty room."""
    photo = face_crop(face_img, box, 0.75)
    photo = cv2.resize(photo, (300, 400), interpolation=cv2.INTER_AREA)
    m = 21
    paper = cv2.copyMakeBorder(photo, m, m, m, m, cv2.BORDER_CONSTANT, value=(236, 238, 240))
    room = cv2.resize(room, (640, 480), interpolation=cv2.INTER_LINEAR)
    h, w = paper.shape[:2]
    s = 0.95
    x0, y0 = 320 - w * s / 2, 240 - h * s / 2 + 10
    quad = np.float32([(x0 + tilt * 40, y0), (x0 + w * s - tilt * 25, y0 + tilt * 20),
                       (x0 + w * s, y0 + h * s - tilt * 10), (x0 - tilt * 15, y0 + h * s)])
    return _warp_into(room, paper, quad)


def face_box(obs):
    """The main face box, or the largest counted face when the face stage does not call it present."""
    return obs.box if obs.box is not None else (obs.face_boxes[0] if obs.face_boxes else None)


@dataclass
class Case:
    name: str
    kind: str          # real | b1 | screen | screen_room | print
    side: str          # A | B
    transformed: bool
    frame: np.ndarray

    @property
    def spoof(self) -> bool:
        return self.kind != "real"


def build_cases(testdata: Path, analyzer, quick: bool = False) -> list[Case]:
    read = lambda n: cv2.imread(str(testdata / n), cv2.IMREAD_COLOR)  # noqa: E731
    names = real_photo_names(testdata)
    if quick:
        names = names[::4]
    rooms = [read(n) for n in EMPTY_ROOMS]
    b1 = read(SPOOF_PHOTO)
    transforms = list(TRANSFORMS.items())[::3] if quick else list(TRANSFORMS.items())
    cases = [Case("b_1", "b1", "B", False, b1)]
    cases += [Case(f"b_1 {t}", "b1", "B", True, fn(b1)) for t, fn in transforms]
    cases += [Case(f"b_1 on {EMPTY_ROOMS[i][:3]}", "b1", "B", True, phone_on_background(b1, rooms[i], s, sh))
              for i, s, sh in ((0, 0.8, (-0.1, 0.05)), (1, 0.7, (0.15, 0.1)))]
    for k, name in enumerate(names):
        img = read(name)
        side = side_of(name, real_photo_names(testdata))
        cases.append(Case(name, "real", side, False, img))
        cases += [Case(f"{name} {t}", "real", side, True, fn(img)) for t, fn in transforms]
        box = face_box(analyzer.analyze(img))
        if box is None:
            continue
        screen = screen_composite(b1, img, box)
        cases.append(Case(f"{name} on screen", "screen", side, False, screen))
        cases.append(Case(f"{name} on screen jpeg60", "screen", side, True, _jpeg(screen, 60)))
        room = rooms[k % 2]
        cases.append(Case(f"{name} screen in room", "screen_room", side, True,
                          phone_on_background(screen, room, 0.75, (0.12 * (-1) ** k, 0.05))))
        cases.append(Case(f"{name} print", "print", side, False, printed_photo(img, box, rooms[(k + 1) % 2], 0.4 + 0.3 * (k % 3))))
    return cases


@dataclass
class Scored:
    case: Case
    found: bool
    score: float = 0.0
    cues: dict | None = None


def score_cases(cases: list[Case], analyzer, check) -> tuple[list[Scored], list[float]]:
    out, costs = [], []
    for c in cases:
        obs = analyzer.analyze(c.frame)
        box = face_box(obs)
        if box is None:
            out.append(Scored(c, False))
            continue
        t0 = time.perf_counter()
        r = check.assess(c.frame, box, obs.landmarks)
        costs.append((time.perf_counter() - t0) * 1000)
        out.append(Scored(c, True, r.score, r.cues))
    return out, costs


def choose_threshold(scored: list[Scored]) -> float:
    """On one side: midway between the highest real score (untransformed or transformed) and the
    next spoof score above it, so that no real face on that side is refused."""
    bound = max(s.score for s in scored if s.found and not s.case.spoof)
    above = sorted(s.score for s in scored if s.found and s.case.spoof and s.score > bound)
    return round((bound + above[0]) / 2, 3) if above else round(min(1.0, bound + 0.05), 3)


def table(scored: list[Scored], threshold: float, side: str) -> list[str]:
    rows = [f"| side {side} | cases | no face found | refused | rate |", "|---|---|---|---|---|"]
    groups = [("real, untransformed", lambda s: not s.case.spoof and not s.case.transformed),
              ("real, transformed", lambda s: not s.case.spoof and s.case.transformed),
              ("b_1 and its transforms", lambda s: s.case.kind == "b1"),
              ("face on b_1's screen", lambda s: s.case.kind == "screen"),
              ("screen pasted in a room", lambda s: s.case.kind == "screen_room"),
              ("printed photo in a room", lambda s: s.case.kind == "print")]
    for label, pick in groups:
        sel = [s for s in scored if s.case.side == side and pick(s)]
        if not sel:
            continue
        found = [s for s in sel if s.found]
        ref = sum(s.score >= threshold for s in found)
        rows.append(f"| {label} | {len(sel)} | {len(sel) - len(found)} | {ref} | {ref / max(1, len(found)):.0%} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--testdata", default=str(REPO_ROOT.parent / "shared" / "testdata"))
    ap.add_argument("--quick", action="store_true", help="a quarter of the photos, a third of the transforms")
    args = ap.parse_args(argv)
    from config_vision import load_vision_config
    from face_pipeline import FaceAnalyzer
    from presentation_attack import PresentationAttackCheck

    cfg = load_vision_config()
    analyzer = FaceAnalyzer(cfg, static_image_mode=True)
    cases = build_cases(Path(args.testdata), analyzer, args.quick)
    scored, costs = score_cases(cases, analyzer, PresentationAttackCheck(cfg))
    side_a = [s for s in scored if s.case.side == "A"]
    chosen = choose_threshold(side_a)
    print(f"threshold chosen on side A: {chosen} (configured PA_FRAME_SCORE_THRESHOLD: {cfg.PA_FRAME_SCORE_THRESHOLD})\n")
    for side in ("A", "B"):
        print("\n".join(table(scored, cfg.PA_FRAME_SCORE_THRESHOLD, side)), "\n")
        sel = [s for s in scored if s.case.side == side and s.found]
        real = [s for s in sel if not s.case.spoof]
        plain = [s for s in real if not s.case.transformed]
        spoof = [s for s in sel if s.case.spoof]
        hi_plain = max(plain, key=lambda s: s.score)
        hi_real = max(real, key=lambda s: s.score)
        lo_spoof = min(spoof, key=lambda s: s.score)
        print(f"side {side}: highest untransformed real {hi_plain.score:.3f} ({hi_plain.case.name}), "
              f"highest real {hi_real.score:.3f} ({hi_real.case.name}), lowest spoof {lo_spoof.score:.3f} "
              f"({lo_spoof.case.name}); margins to the threshold: real {cfg.PA_FRAME_SCORE_THRESHOLD - hi_plain.score:+.3f}, "
              f"spoof {lo_spoof.score - cfg.PA_FRAME_SCORE_THRESHOLD:+.3f}\n")
    b1 = next(s for s in scored if s.case.name == "b_1")
    print(f"b_1: score {b1.score:.3f} sides {b1.cues['sides'] if b1.cues else None}")
    print(f"\nassess(): {statistics.mean(costs):.1f} ms mean, {statistics.median(costs):.1f} ms median over {len(costs)} calls "
          f"(face detection not included)")
    analyzer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
