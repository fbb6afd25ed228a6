"""Fairness and robustness report: per rule, false alarms and misses by lighting, face size and skin-tone group.

    .venv/bin/python bench/fairness.py --quick     # 20 photos, 10 s clips (12-20 minutes on the shared 2-core VM)
    .venv/bin/python bench/fairness.py             # every photo, 24 s clips (over an hour)

Every testdata photo with a person is labelled in bench/fairness_labels.tsv (perceived skin-tone group,
Monk Skin Tone scale 1-3 / 4-7 / 8-10: the developers' visual estimate of the photo, docs/fairness.md).
Axes, each crossed with the group: lighting (gamma 0.6 / 1 / 1.6 / 2.2 / 3, gain 1 / 1 / 0.8 / 0.6 /
0.45, the whole photo in a 640x480 frame) and face size (the main face scaled to 48 / 88 / 136 / 200 px,
bands <64 / 64-111 / 112-159 / >=160, a 640x480 frame cut around the faces; no cell needing more than 2x
enlargement). Frames get fresh noise (sigma 3) and JPEG 80 (tests/presence_scenes.apply).

The project's components, as the live workers use them: face_pipeline.FaceAnalyzer (video mode for
clips, photo mode for photos), person_pipeline.create_detector + ObjectEvidence, DecisionEngine fed
FrameObservations at 2 frames/s, face_identity.FaceIdentity. Per rule:
- NO_FACE: person photos as clips (frames judged absent, NO_FACE started: false alarms); empty scenes
  (tests/presence_scenes: NO_FACE never started) and person -> empty -> person clips (not active
  3-4.5 s after leaving): misses.
- MULTIPLE_FACES: the same clips: one-person photos (false alarms), 2-3 people and side-by-side
  composites (misses); photos with a crowd behind are reported apart.
- EYES_CLOSED, DISTRACTION: the same clips of frontal one-person photos (false alarms).
- PROHIBITED_OBJECT: bench/detection_quality.py's CASES, a short clip each, detector on every frame
  (misses on phone/book/laptop photos, false alarms on the others; quick mode: lighting only); and
  started in the person clips of photos without objects (false alarms by group).
- IDENTITY_MISMATCH: every identity photo enrolled and compared with every other photo's transformed
  copies (identity_samples.build_samples, face_identity.compare): false refusals and false matches.

Prints markdown tables of counts with denominators; asserts nothing.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

LABELS = Path(__file__).resolve().parent / "fairness_labels.tsv"
DEFAULT_TESTDATA = Path(os.environ.get("PROCTOR_TESTDATA", REPO_ROOT.parent / "shared" / "testdata"))
GROUPS = ("1-3", "4-7", "8-10", "mixed")
LIGHTING = (("gamma 0.6", 0.6, 1.0), ("gamma 1", 1.0, 1.0), ("gamma 1.6", 1.6, 0.8),
            ("gamma 2.2", 2.2, 0.6), ("gamma 3", 3.0, 0.45))
SIZES = (("face <64 px", 48), ("face 64-111 px", 88), ("face 112-159 px", 136), ("face >=160 px", 200))
SIZE_BANDS = ((0, 64), (64, 112), (112, 160), (160, 100000))
FRAME_W, FRAME_H, FPS = 640, 480, 2.0
MAX_UPSCALE = 2.0
NOISE, JPEG = 3.0, 80
DETECTOR_EVERY = 4  # frames: the detector runs every 2 s in the clips (the live cadence runs it about as often on a still scene)
# Side-by-side composites of two one-person photos: MULTIPLE_FACES must fire.
COMPOSITES = (("a_3_face_closeup_sergey.png", "identity/people/p04_img13.jpg"),
              ("identity/obama.jpg", "identity/people/p07_img25.jpg"),
              ("identity/obama2.jpg", "a_7_astronaut.png"),
              ("identity/people/p07_img24.jpg", "identity/people/p01_img10.jpg"))
QUICK_PHOTOS = ("a_1", "a_3", "a_6", "a_7", "b_3", "c_1", "d_3", "e_2", "e_5", "identity/obama.jpg",
                "identity/obama2.jpg", "identity/biden.jpg", "p01_img1.", "p02_img42.", "p03_img3.",
                "p04_img13.", "p05_img39.", "p06_img20.", "p07_img24.", "p07_img25.")


# ------------------------------------------------------------------------------------------- labels
@dataclass(frozen=True)
class Label:
    file: str
    people: int
    faces: int
    groups: tuple[str, ...]
    gender: tuple[str, ...]
    age: tuple[str, ...]
    frontal: bool
    background: bool  # other people visible behind the main person (a crowd): not counted in people
    note: str

    @property
    def group(self) -> str:
        """The photo's group: its people's group when they share one, else "mixed"."""
        return self.groups[0] if len(set(self.groups)) == 1 else "mixed"


def load_labels(path: Path = LABELS) -> dict[str, Label]:
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#")]
    out = {}
    for r in csv.DictReader(lines, delimiter="\t"):
        groups = tuple(r["skin_group"].split(";"))
        bad = [g for g in groups if g not in GROUPS[:3]]
        if bad:
            raise ValueError(f"{path}: {r['file']}: unknown skin group {bad} (use 1-3, 4-7 or 8-10)")
        out[r["file"]] = Label(r["file"], int(r["people"]), int(r["faces"]), groups, tuple(r["gender"].split(";")),
                               tuple(r["age_band"].split(";")), r["frontal"] == "yes", r["background"] == "yes",
                               r["note"])
    return out


def photos_with_people(testdata: Path) -> list[str]:
    """Every testdata photo SOURCES.tsv says shows a person (the identity/people glob expanded)."""
    out = []
    for r in csv.DictReader((testdata / "SOURCES.tsv").open(encoding="utf-8"), delimiter="\t"):
        if r["shows"].strip() == "no person":
            continue
        if "*" in r["file"]:
            out += sorted(str(p.relative_to(testdata)) for p in testdata.glob(r["file"]))
        else:
            out.append(r["file"])
    return out


def read(testdata: Path, name: str) -> np.ndarray:
    img = cv2.imread(str(testdata / name), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(testdata / name)
    return img


# ------------------------------------------------------------------------------------------- frames
def fit_frame(img: np.ndarray) -> np.ndarray:
    """The whole photo in a 640x480 frame (black bars): its natural face size."""
    h, w = img.shape[:2]
    s = min(FRAME_W / w, FRAME_H / h)
    small = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    out = np.zeros((FRAME_H, FRAME_W, 3), np.uint8)
    y, x = (FRAME_H - small.shape[0]) // 2, (FRAME_W - small.shape[1]) // 2
    out[y:y + small.shape[0], x:x + small.shape[1]] = small
    return out


def sized_frame(img: np.ndarray, boxes: tuple, target_px: int) -> tuple[np.ndarray, int] | None:
    """The photo scaled so its largest face's short side is target_px, cut to 640x480 around the faces;
    (frame, faces whose centre is in the frame), or None when that needs more than MAX_UPSCALE."""
    main = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    s = target_px / min(main[2] - main[0], main[3] - main[1])
    if s > MAX_UPSCALE:
        return None
    h, w = img.shape[:2]
    big = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))),
                     interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    cx = (min(b[0] for b in boxes) + max(b[2] for b in boxes)) / 2 * s
    cy = (min(b[1] for b in boxes) + max(b[3] for b in boxes)) / 2 * s
    x0 = int(min(max(0, cx - FRAME_W / 2), max(0, big.shape[1] - FRAME_W)))
    y0 = int(min(max(0, cy - FRAME_H / 2), max(0, big.shape[0] - FRAME_H)))
    crop = big[y0:y0 + FRAME_H, x0:x0 + FRAME_W]
    out = np.zeros((FRAME_H, FRAME_W, 3), np.uint8)
    oy, ox = (FRAME_H - crop.shape[0]) // 2, (FRAME_W - crop.shape[1]) // 2
    out[oy:oy + crop.shape[0], ox:ox + crop.shape[1]] = crop
    inside = sum(1 for b in boxes if 0 <= (b[0] + b[2]) / 2 * s - x0 < FRAME_W and 0 <= (b[1] + b[3]) / 2 * s - y0 < FRAME_H)
    return out, inside


def composite(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two photos side by side, each cover-cropped to 320x480: two people in one webcam frame."""
    from tests.photos import cover
    return np.hstack([cover(a, (FRAME_W // 2, FRAME_H)), cover(b, (FRAME_W // 2, FRAME_H))])


def conditions(img: np.ndarray, boxes: tuple) -> list[tuple[str, str, np.ndarray, float, float]]:
    """(axis, condition, 640x480 scene, gamma, gain) for every lighting and size cell of one photo."""
    natural = fit_frame(img)
    out = [("lighting", name, natural, g, k) for name, g, k in LIGHTING]
    for name, px in SIZES:
        made = sized_frame(img, boxes, px) if boxes else None
        if made is not None and made[1] >= min(2, len(boxes)):  # a group cut to one face says nothing of MULTIPLE_FACES
            out.append(("size", name, made[0], 1.0, 1.0))
    return out


# ------------------------------------------------------------------------------------------- tallies
class Tally:
    """(metric, axis, condition, group) -> [bad, total]."""

    def __init__(self) -> None:
        self.cells: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])

    def add(self, metric: str, axis: str, cond: str, group: str, bad: int, total: int = 1) -> None:
        for g in (group, "all"):
            cell = self.cells[(metric, axis, cond, g)]
            cell[0] += int(bad)
            cell[1] += int(total)

    def table(self, metric: str, title: str) -> None:
        print(f"\n### {title}\n")
        seen = {k[3] for k in self.cells if k[0] == metric}
        cols = [g for g in GROUPS[:3] if seen - {"n/a", "all"}] + [g for g in ("mixed", "n/a") if g in seen] + ["all"]
        print("| condition | " + " | ".join(f"MST {g}" if g[0].isdigit() else g for g in cols) + " |")
        print("|---|" + "---|" * len(cols))
        for axis, conds in (("lighting", [c[0] for c in LIGHTING]), ("size", [c[0] for c in SIZES])):
            for cond in conds:
                row = [self.cells.get((metric, axis, cond, g)) for g in cols]
                if not any(row):
                    continue
                print(f"| {cond} | " + " | ".join(f"{c[0]}/{c[1]}" if c else "-" for c in row) + " |")


# ------------------------------------------------------------------------------------------- clips
def clip(cfg, det, scene: np.ndarray, gamma: float, gain: float, frames: int, seed: int) -> dict:
    """One still scene as a stream at 2 frames/s through the face stage, the detector every
    DETECTOR_EVERY frames (ObjectEvidence), and the decision engine: what was seen and which rules started."""
    from decision_engine import DecisionEngine, FrameObservation
    from face_pipeline import FaceAnalyzer
    from person_pipeline import ObjectEvidence
    from tests.presence_scenes import Transform, apply

    tf = Transform("fairness", gamma=gamma, gain=gain, noise=NOISE, jpeg=JPEG)
    rng = np.random.default_rng(seed)
    engine, evidence = DecisionEngine(cfg), ObjectEvidence.from_config(cfg)
    dets = dets_t = None
    out = {"absent": 0, "present": 0, "judged": 0, "started": set(), "no_face_at": []}
    with FaceAnalyzer(cfg) as faces:
        for i in range(frames):
            t = i / FPS
            frame = apply(scene, tf, rng)
            face = faces.analyze(frame)
            if det is not None and i % DETECTOR_EVERY == 0:
                dets, dets_t = evidence.update(det.detect(frame)), t
            if i > 0:  # a face only the detectors see needs a second look (bench/presence_sweep.py)
                out["judged"] += 1
                out["absent" if not face.face_detected else "present"] += 1
            obs = FrameObservation(t=t, face=face, detections=dets, detections_t=dets_t)
            for ev in engine.evaluate("s", obs, t):
                if ev.state == "started":
                    out["started"].add(ev.rule)
                    if ev.rule == "NO_FACE":
                        out["no_face_at"].append(t)
    return out


def person_clips(cfg, det, testdata: Path, labels: dict, names: list[str], frames: int, tally: Tally, log,
                 only: tuple[str, ...] = (), cells: tuple[str, ...] = ()) -> None:
    from detection_quality import CASES
    from face_pipeline import FaceAnalyzer

    object_photos = {c[0] for c in CASES if c[1] is not None}  # photos showing a phone, book or laptop
    with FaceAnalyzer(cfg, static_image_mode=True) as photo_faces:
        cases = [(n, read(testdata, n)) for n in names]
        cases = [(n, img, photo_faces.analyze(img).face_boxes) for n, img in cases]
        comps = [(f"{a} + {b}", composite(read(testdata, a), read(testdata, b))) for a, b in COMPOSITES
                 if not only or any(o in a or o in b for o in only)]
        comps = [(n, img, photo_faces.analyze(img).face_boxes) for n, img in comps]
    for k, (name, img, boxes) in enumerate(cases + comps):
        if "+" in name:
            a, b = name.split(" + ")
            groups = set(labels[a].groups + labels[b].groups)
            group, people, frontal, objects = (groups.pop() if len(groups) == 1 else "mixed"), 2, False, False
            background = False
        else:
            lab = labels[name]
            group, people, frontal = lab.group, lab.people, lab.frontal and lab.people == 1
            objects, background = name in object_photos, lab.background
        t0 = time.perf_counter()
        for axis, cond, scene, gamma, gain in conditions(img, boxes):
            if cells and cond not in cells:
                continue
            r = clip(cfg, det, scene, gamma, gain, frames, seed=k)
            started = r["started"]
            if people == 1:
                tally.add("absent frames", axis, cond, group, r["absent"], r["judged"])
                tally.add("NO_FACE false", axis, cond, group, "NO_FACE" in started)
                tally.add("MULTIPLE background" if background else "MULTIPLE false", axis, cond, group,
                          "MULTIPLE_FACES" in started)
            else:
                tally.add("MULTIPLE miss", axis, cond, group, "MULTIPLE_FACES" not in started)
            if frontal:
                tally.add("EYES false", axis, cond, group, "EYES_CLOSED" in started)
                tally.add("DISTRACTION false", axis, cond, group, "DISTRACTION" in started)
            if not objects:
                tally.add("OBJECT false (clips)", axis, cond, group, "PROHIBITED_OBJECT" in started)
            if (started - {"PROHIBITED_OBJECT"} and people == 1 or "MULTIPLE_FACES" not in started and people > 1
                    or "PROHIBITED_OBJECT" in started and not objects):
                log(f"    {name} [{cond}]: started {sorted(started)}; absent {r['absent']}/{r['judged']}")
        log(f"  {name}: {time.perf_counter() - t0:.0f} s")


def absence(cfg, frames: int, tally: Tally, log) -> None:
    """Empty scenes as clips (frames judged present; NO_FACE never started = a miss) and person ->
    empty -> person clips (NO_FACE must start 3-4.5 s after the person left)."""
    from decision_engine import DecisionEngine, FrameObservation
    from face_pipeline import FaceAnalyzer
    from tests.presence_scenes import PERSON_PHOTOS, Transform, covered, empty_scenes, person_clip

    for k, (label, scene) in enumerate(empty_scenes()):
        for name, gamma, gain in LIGHTING:
            r = clip(cfg, None, scene, gamma, gain, frames, seed=k)
            tally.add("present frames (empty)", "lighting", name, "n/a", r["present"], r["judged"])
            tally.add("NO_FACE miss (empty)", "lighting", name, "n/a", not r["no_face_at"])
    labels = load_labels()
    left_s = 5.0
    for name in PERSON_PHOTOS:
        try:
            covered(name)
        except ValueError:
            continue  # a close-up: nothing of the room is left once the person is covered
        for cond, gamma, gain in LIGHTING:
            tf = Transform(cond, gamma=gamma, gain=gain, noise=NOISE, jpeg=JPEG)
            engine, fired = DecisionEngine(cfg), []
            with FaceAnalyzer(cfg) as faces:
                for t, _, frame in person_clip(name, tf, before_s=left_s, empty_s=8, after_s=4):
                    for ev in engine.evaluate("c", FrameObservation(t=t, face=faces.analyze(frame)), t):
                        if ev.rule == "NO_FACE" and ev.state == "started":
                            fired.append(round(t - left_s, 1))
            early = [t for t in fired if t < 0]  # the person was never seen: a false alarm, counted apart
            in_time = [t for t in fired if cfg.TIME_NO_FACE_S <= t <= cfg.TIME_NO_FACE_S + 1.5]
            tally.add("NO_FACE miss (leaves)", "lighting", cond, labels[name].group, not (in_time or early))
            tally.add("NO_FACE early (leaves)", "lighting", cond, labels[name].group, bool(early))
            if fired != in_time:
                log(f"    clip {name} [{cond}]: NO_FACE at {fired or 'never'} s after leaving")


# ------------------------------------------------------------------------------------------- objects
def objects(cfg, det, testdata: Path, frames: int, quick: bool, tally: Tally, log) -> None:
    """detection_quality's CASES under every lighting and size cell, a short clip each with the
    detector on every frame: PROHIBITED_OBJECT must start on photos showing their object and only there."""
    from detection_quality import CASES
    from face_pipeline import FaceAnalyzer

    labels = load_labels()
    with FaceAnalyzer(cfg, static_image_mode=True) as photo_faces:
        for k, (name, expected, _, _) in enumerate(CASES):
            img = read(testdata, name)
            boxes = photo_faces.analyze(img).face_boxes
            group = labels[name].group if name in labels else "n/a"
            for axis, cond, scene, gamma, gain in conditions(img, boxes):
                if quick and axis == "size":
                    continue
                r = _object_clip(cfg, det, scene, gamma, gain, frames, seed=k)
                if expected is None:
                    tally.add("OBJECT false (cases)", axis, cond, group, bool(r))
                    if r:
                        log(f"    {name} [{cond}]: false alarm {sorted(r)}")
                else:
                    label = {67: "phone", 73: "book", 63: "laptop"}.get(expected, str(expected))
                    tally.add(f"OBJECT miss {label}", axis, cond, group, label not in r)


def _object_clip(cfg, det, scene, gamma, gain, frames, seed) -> set[str]:
    """The labels in PROHIBITED_OBJECT's started events over a short clip (detector on every frame)."""
    from decision_engine import DecisionEngine, FrameObservation
    from person_pipeline import ObjectEvidence
    from tests.presence_scenes import Transform, apply

    tf = Transform("objects", gamma=gamma, gain=gain, noise=NOISE, jpeg=JPEG)
    rng = np.random.default_rng(seed)
    engine, evidence, found = DecisionEngine(cfg), ObjectEvidence.from_config(cfg), set()
    names = {"cell phone": "phone", "book": "book", "laptop": "laptop"}
    for i in range(frames):
        t = i / FPS
        dets = evidence.update(det.detect(apply(scene, tf, rng)))
        for ev in engine.evaluate("o", FrameObservation(t=t, face=None, detections=dets, detections_t=t), t):
            if ev.rule == "PROHIBITED_OBJECT" and ev.state == "started":
                found |= {names.get(o["label"], o["label"]) for o in ev.details.get("objects", [])}
    return found


# ------------------------------------------------------------------------------------------- identity
def identity(cfg, testdata: Path, quick: bool, tally: Tally, log) -> None:
    """Every identity photo enrolled, compared with every other photo's transformed copies."""
    import identity_samples as ids
    from face_identity import FaceIdentity, compare
    from face_pipeline import FaceAnalyzer

    labels = load_labels()

    def light(g, k):
        lut = np.clip(255.0 * k * (np.arange(256) / 255.0) ** g, 0, 255).round().astype(np.uint8)
        return lambda im, px: ids._jpeg(cv2.LUT(im, lut), JPEG)

    def size(target):
        return lambda im, px: None if px < target else ids._jpeg(ids._scale_face_to(im, px, target) if px > target else im, JPEG)

    transforms = {("lighting", n): light(g, k) for n, g, k in LIGHTING if not quick or n in ("gamma 1", "gamma 2.2", "gamma 3")}
    transforms.update({("size", n): size(px) for n, px in SIZES if not quick or px in (48, 88)})
    named = {f"{a}|{c}": fn for (a, c), fn in transforms.items()}
    ident, faces = FaceIdentity(cfg), FaceAnalyzer(cfg, static_image_mode=True)
    t0 = time.perf_counter()
    enrolled, refused = {}, []
    for person, name, img in ids.load_photos(testdata):
        e = ident.enrol(img)
        if e.ok:
            enrolled[name] = (person, e.embedding)
        else:
            refused.append(f"{name} ({e.error})")
    samples, missed = ids.build_samples(ident, faces, testdata, transforms=named, log=lambda *a: None)
    ident.close()
    faces.close()
    log(f"  identity: {len(enrolled)} enrolled, {len(samples)} probes in {time.perf_counter() - t0:.0f} s; "
        f"enrolment refused: {', '.join(refused) or 'none'}; no face: {', '.join(missed) or 'none'}")
    thr = float(cfg.IDENTITY_DISTANCE_THRESHOLD)
    closest: dict[str, tuple[float, str]] = {}
    farthest: dict[str, tuple[float, str]] = {}
    for ename, (eperson, etpl) in enrolled.items():
        for s in samples:
            if s.photo == ename:
                continue  # the enrolment photo itself: only other photos are probes
            axis, cond = s.transform.split("|")
            d = compare(etpl, s.template, cfg).distance
            ga, gb = labels[ename].group, labels[s.photo].group
            if s.person == eperson:
                tally.add("ID false refusal", axis, cond, ga, d > thr)
                if s.face_px >= 80 and d > farthest.get(ga, (-1.0, ""))[0]:
                    farthest[ga] = (d, f"{ename} vs {s.photo} [{cond}, {s.face_px} px]")
            else:
                pair = ga if ga == gb else "mixed"
                tally.add("ID false match", axis, cond, pair, d <= thr)
                if d < closest.get(pair, (9.0, ""))[0]:
                    closest[pair] = (d, f"{ename} vs {s.photo} [{cond}, {s.face_px} px]")
    print(f"\nIdentity threshold {thr} (fused dlib + FaceRes distance, face_identity.compare).")
    for g, (d, what) in sorted(closest.items()):
        print(f"- closest different-person pair, group {g}: {d:.3f} (margin {d - thr:+.3f}): {what}")
    for g, (d, what) in sorted(farthest.items()):
        print(f"- farthest same-person pair (faces >= 80 px), group {g}: {d:.3f} (margin {thr - d:+.3f}): {what}")


# ------------------------------------------------------------------------------------------- main
def select(names: list[str], quick: bool, only: tuple[str, ...] = ()) -> list[str]:
    keep = [n for n in names if not n.startswith("b_1")]  # b_1's face is on a phone screen: a spoof, not an examinee
    if only:
        return [n for n in keep if any(o in n for o in only)]
    return [n for n in keep if any(q in n for q in QUICK_PHOTOS)] if quick else keep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 photos, 10 s clips, fewer identity transforms")
    ap.add_argument("--testdata", type=Path, default=DEFAULT_TESTDATA)
    ap.add_argument("--parts", default="faces,absence,objects,identity", help="comma-separated parts to run")
    ap.add_argument("--only", default="", help="comma-separated parts of photo names: the face clips of these only")
    ap.add_argument("--frames", type=int, default=0, help="frames per face clip at 2 frames/s (default 20 quick, 48 full)")
    ap.add_argument("--cells", default="", help="comma-separated conditions (e.g. 'gamma 3,face <64 px'): the face clips of these only")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each false alarm and miss as it happens")
    args = ap.parse_args(argv)
    from config_vision import load_vision_config
    from person_pipeline import create_detector

    log = print if args.verbose else (lambda *a: None)
    cfg = load_vision_config(env={})
    labels = load_labels()
    people = photos_with_people(args.testdata)
    unlabelled = [n for n in people if n not in labels]
    if unlabelled:
        raise SystemExit(f"{LABELS.name} has no row for: {', '.join(unlabelled)}")
    parts = set(args.parts.split(","))
    frames = args.frames or (20 if args.quick else 48)
    det = create_detector(cfg, models_dir=REPO_ROOT / "models")
    print(f"# Fairness report, {time.strftime('%Y-%m-%d %H:%M')}, {'quick' if args.quick else 'full'} mode\n")
    print(f"machine: {os.cpu_count()} CPU(s), {platform.machine()}, no GPU, load average "
          f"{os.getloadavg()[0]:.1f} at start; detector {det.name if det else 'none'}; clips {frames / FPS:.0f} s "
          f"at {FPS:.0f} frames/s; noise sigma {NOISE}, JPEG {JPEG}")
    counts = defaultdict(int)
    for n in people:
        counts[labels[n].group] += 1
    print("photos with a person per group: " + ", ".join(f"{g}: {counts[g]}" for g in GROUPS))
    tally, t0 = Tally(), time.perf_counter()
    if "faces" in parts:
        only = tuple(o for o in args.only.split(",") if o)
        cells = tuple(c for c in args.cells.split(",") if c)
        person_clips(cfg, det, args.testdata, labels, select(people, args.quick, only), frames, tally, log, only, cells)
        print(f"\n## Face rules on clips of still photos ({time.perf_counter() - t0:.0f} s)")
        tally.table("absent frames", "NO_FACE: frames judged absent (after the first) / frames, one-person photos")
        tally.table("NO_FACE false", "NO_FACE false alarms: clips where it started / clips, one-person photos")
        tally.table("MULTIPLE false", "MULTIPLE_FACES false alarms: clips where it started / clips, one-person photos")
        tally.table("MULTIPLE background", "MULTIPLE_FACES on one-person photos with a crowd behind (neither false nor a miss)")
        tally.table("MULTIPLE miss", "MULTIPLE_FACES misses: clips where it never started / clips, 2-3 people")
        tally.table("EYES false", "EYES_CLOSED false alarms: clips / clips, frontal one-person photos")
        tally.table("DISTRACTION false", "DISTRACTION false alarms: clips / clips, frontal one-person photos")
        tally.table("OBJECT false (clips)", "PROHIBITED_OBJECT false alarms on person clips without objects")
    if "absence" in parts:
        t1 = time.perf_counter()
        absence(cfg, 12, tally, log)
        print(f"\n## Absence ({time.perf_counter() - t1:.0f} s): empty scenes, 6 s clips; person -> empty -> person")
        tally.table("present frames (empty)", "Empty scenes: frames judged present / frames (group: nobody there)")
        tally.table("NO_FACE miss (empty)", "Empty scenes: clips where NO_FACE never started / clips")
        tally.table("NO_FACE miss (leaves)", "Person leaves: NO_FACE not active 3-4.5 s after leaving / clips")
        tally.table("NO_FACE early (leaves)", "Person leaves: NO_FACE already started before they left (not seen) / clips")
    if "objects" in parts:
        t1 = time.perf_counter()
        objects(cfg, det, args.testdata, 6 if args.quick else 8, args.quick, tally, log)
        print(f"\n## Prohibited objects ({time.perf_counter() - t1:.0f} s), detection_quality's CASES, "
              "detector on every frame of a short clip")
        for cls in ("phone", "book", "laptop"):
            tally.table(f"OBJECT miss {cls}", f"PROHIBITED_OBJECT misses, {cls} photos: clips without a {cls} alarm / clips")
        tally.table("OBJECT false (cases)", "PROHIBITED_OBJECT false alarms, photos without objects (group n/a: rooms)")
    if "identity" in parts:
        t1 = time.perf_counter()
        print(f"\n## Identity (IDENTITY_MISMATCH)")
        identity(cfg, args.testdata, args.quick, tally, log)
        print(f"({time.perf_counter() - t1:.0f} s)")
        tally.table("ID false refusal", "False refusals: same person, another photo / such pairs (group of the person)")
        tally.table("ID false match", "False matches: different people / such pairs (mixed: a pair across groups)")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; load average {os.getloadavg()[0]:.1f} at the end")
    if det is not None:
        det.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
