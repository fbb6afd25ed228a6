"""Vision pipeline benchmark: per-stage timings and whole-pipeline throughput, our design vs a seed-style baseline.

    .venv/bin/python bench/pipeline_bench.py [--students 6] [--frames 40] [--workers 2] [--stage-frames 30]
    .venv/bin/python bench/pipeline_bench.py --hand-look-only [--hand-look-frames 12]

Prints figures only (no assertions; no pass/fail). Frames are 640x480 webcam-like streams made
from the real photos in ../shared/testdata (PROCTOR_TESTDATA): each simulated student is one
photo with small shifts, exposure drift and sensor noise per frame.

Part 1, per stage (ms per 640x480 frame, median and p95, one process): face stage in tracking
mode and in static-image mode, object detector, identity check, decision engine + warning
system, HUD drawing. Then what the detector's hand-guided look (DETECTOR_HAND_LOOK: MediaPipe
Hands, and the face detector for heads when a hand holds something phone-ish) costs per detector
run: the same frames with it on and off, alternating, on a photo without hands (a_1), one with a
hand at waist height (c_1) and one with phones at the ears (b_3), wall and process-CPU ms.

Part 2, whole pipeline (face + detector + decision + warning) over all students' frames:
  ours     FaceMesh in tracking mode, one FaceAnalyzer per stream, the detector when the stream's
           DetectorCadence says so (proctor/live/cadence.py: by scene; the streams here are still
           photos, so mostly once per DETECTOR_STEADY_INTERVAL_S), one detector per worker
           (DETECTOR_THREADS each), students spread over --workers processes (sticky), no shared locks;
  baseline the seed's shape: one FaceAnalyzer in static-image mode and one detector (onnxruntime
           using every core) shared behind one global lock per model, the detector on every
           frame, all frames handled serially in one process.
Both see the same frames in the same order per student. Then: frames/s of each, the ratio,
and whether both produced the same detections on the frames where both ran the detector.
The identity check (every IDENTITY_CHECK_EVERY_S in the live loop) is left out of part 2 for
both; its cost per check is in part 1.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
from face_pipeline import camera_activity, lower_half_motion  # noqa: E402  (what the live workers measure)
from tests.photos import cover  # noqa: E402
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TESTDATA = Path(os.environ.get("PROCTOR_TESTDATA", REPO_ROOT.parent / "shared" / "testdata"))
# Students are dealt to workers round-robin (student i -> worker i % workers), blind to content as
# in the live runtime; this order gives each of 2 workers a mix of plain and busy (several people,
# objects: more detector work) streams rather than all busy ones on one worker.
STUDENT_PHOTOS = (
    "a_1_webcam_woman_T1.jpg", "b_3_coco536_women_on_phones.jpg", "c_1_coco446_woman_bookshelf.jpg",
    "a_3_face_closeup_sergey.png", "a_6_grace_hopper.jpg", "d_3_woman_holding_xo_laptop.jpg",
    "b_1_phone_held_to_webcam.jpg", "a_7_astronaut.png",
)
FRAME_SIZE = (640, 480)
STREAM_FPS = 10.0  # frame time step of the simulated streams (the rules use frame time)


# ------------------------------------------------------------------ frames



def student_frames(student: int, n: int):
    """The student's n frames: one real photo, as a webcam would deliver it (deterministic)."""
    import cv2
    import numpy as np

    name = STUDENT_PHOTOS[student % len(STUDENT_PHOTOS)]
    image = cv2.imread(str(TESTDATA / name), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {TESTDATA / name} (set PROCTOR_TESTDATA)")
    if student >= len(STUDENT_PHOTOS):
        image = cv2.flip(image, 1)
    base = cover(image, FRAME_SIZE)
    rng = np.random.default_rng(1000 + student)
    frames = []
    for _ in range(n):
        dx, dy = rng.integers(-4, 5, 2)
        shifted = cv2.warpAffine(base, np.float32([[1, 0, dx], [0, 1, dy]]), FRAME_SIZE, borderMode=cv2.BORDER_REPLICATE)
        noisy = shifted.astype(np.float32) * rng.uniform(0.9, 1.06) + rng.normal(0, 2.5, shifted.shape)
        frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return name, frames


def interleaved(students: list[int], frames: dict[int, list]):
    """(student, index, frame) in arrival order: every student's frame i before anyone's i+1."""
    n = max(len(f) for f in frames.values())
    for i in range(n):
        for s in students:
            if i < len(frames[s]):
                yield s, i, frames[s][i]


def det_key(detections):
    if detections is None:
        return None
    return tuple(sorted((d.class_id, round(float(d.score), 3), tuple(round(float(v), 1) for v in d.box))
                        for d in detections.items))


# ------------------------------------------------------------------ part 1: stages

def pct(values, q):
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))
    return ordered[k]


def timed(fn, repeats):
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def bench_stages(config, n: int) -> dict[str, list[float]]:
    import cv2
    from decision_engine import DecisionEngine, FrameObservation
    from face_identity import FaceIdentity
    from face_pipeline import FaceAnalyzer
    from person_pipeline import create_detector
    from vision_ui import draw_hud
    from warning_system import WarningSystem

    _, frames = student_frames(0, n)
    results: dict[str, list[float]] = {}

    tracker = FaceAnalyzer(config, static_image_mode=False)
    tracker.analyze(frames[0])  # warm-up (graph start)
    it = iter(frames * 2)
    results["face (tracking)"] = timed(lambda: tracker.analyze(next(it)), n)
    static = FaceAnalyzer(config, static_image_mode=True)
    static.analyze(frames[0])
    it = iter(frames * 2)
    results["face (static image)"] = timed(lambda: static.analyze(next(it)), n)

    detector = create_detector(config)
    if detector is not None:
        detector.detect(frames[0])
        it = iter(frames * 2)
        results[f"detector ({detector.info().get('backend')}, 1 thread)"] = timed(lambda: detector.detect(next(it)), n)

    identity = FaceIdentity(config)
    enrol = identity.enrol(cv2.imread(str(TESTDATA / "identity" / "obama.jpg")))
    probe = cover(cv2.imread(str(TESTDATA / "identity" / "obama2.jpg")), FRAME_SIZE)
    if enrol.ok:
        identity.verify(enrol.embedding, probe)
        results["identity verify"] = timed(lambda: identity.verify(enrol.embedding, probe), max(5, n // 3))

    faces = [tracker.analyze(f) for f in frames]
    dets = detector.detect(frames[1]) if detector is not None else None
    engine, warnings = DecisionEngine(config), WarningSystem(config)
    state = {"i": 0}

    def decide():
        i = state["i"]
        state["i"] += 1
        t = i / STREAM_FPS
        obs = FrameObservation(t=t, face=faces[i % len(faces)], detections=dets, detections_t=t,
                               frame_mean=110.0, frame_diff=3.0)
        for e in engine.evaluate("s", obs, t):
            warnings.on_event("s", e)
        warnings.suspicion("s", t)

    results["decision + warning"] = timed(decide, max(n, 200))
    hud_status = {"warnings": 1, "warning_limit": 3, "suspicion": 12.0}
    it = iter(frames * 2)
    results["HUD draw_hud"] = timed(lambda: draw_hud(next(it), faces[0], dets, hud_status, ["PROHIBITED_OBJECT"]), n)
    for closeable in (tracker, static, detector, identity):
        if closeable is not None and hasattr(closeable, "close"):
            closeable.close()
    return results


def bench_hand_look(config, n: int) -> None:
    """Print the detector's ms per run with DETECTOR_HAND_LOOK on and off (figures only)."""
    from person_pipeline import create_detector

    detector = create_detector(config)
    if detector is None:
        print("  hand look: no detector model found")
        return
    on, off = config.with_overrides(DETECTOR_HAND_LOOK=True), config.with_overrides(DETECTOR_HAND_LOOK=False)
    print(f"\nDetector run with the hand look on / off ({detector.info().get('backend')}, HAND_LOOK_MAX_CROPS="
          f"{config.HAND_LOOK_MAX_CROPS}; median ms over {n} frames each, alternating on and off)")
    print(f"  {'photo':<34} {'wall on':>8} {'off':>7} {'+':>7} {'CPU on':>8} {'off':>7} {'+':>7} {'hands':>6} {'at ear':>7}")
    for name in ("a_1_webcam_woman_T1.jpg", "c_1_coco446_woman_bookshelf.jpg", "b_3_coco536_women_on_phones.jpg"):
        _, frames = student_frames(STUDENT_PHOTOS.index(name), n)
        detector.detect(frames[0], config=on)  # warm-up: MediaPipe's graphs start on the first call
        detector.detect(frames[0], config=off)
        wall: dict[bool, list[float]] = {True: [], False: []}
        cpu: dict[bool, list[float]] = {True: [], False: []}
        hands, at_ear = [], 0
        for i, frame in enumerate(frames):
            for look in ((True, False) if i % 2 == 0 else (False, True)):
                t, c = time.perf_counter(), time.process_time()
                dets = detector.detect(frame, config=on if look else off)
                wall[look].append((time.perf_counter() - t) * 1000)
                cpu[look].append((time.process_time() - c) * 1000)
                if look:
                    hands.append(len(dets.hands))
                    at_ear += dets.phone_at_ear
        w_on, w_off = statistics.median(wall[True]), statistics.median(wall[False])
        c_on, c_off = statistics.median(cpu[True]), statistics.median(cpu[False])
        print(f"  {name:<34} {w_on:8.1f} {w_off:7.1f} {w_on - w_off:+7.1f} {c_on:8.1f} {c_off:7.1f} {c_on - c_off:+7.1f} "
              f"{statistics.median(hands):6.0f} {at_ear:4d}/{len(frames)}")
    detector.close()


# ------------------------------------------------------------------ part 2: whole pipeline

def our_worker(worker_id, students, n_frames, overrides, ready, start, results):
    """One worker process: its own analyzers (one per stream) and its own detector."""
    from config_vision import load_vision_config
    from decision_engine import DecisionEngine, FrameObservation
    from face_pipeline import FaceAnalyzer
    from person_pipeline import create_detector
    from proctor.live.cadence import DetectorCadence
    from proctor.live.pipeline import FrameResult
    from warning_system import WarningSystem

    config = load_vision_config(**overrides)
    frames = {s: student_frames(s, n_frames)[1] for s in students}
    analyzers = {s: FaceAnalyzer(config, static_image_mode=False) for s in students}
    detector = create_detector(config)
    engine, warnings = DecisionEngine(config), WarningSystem(config)
    cadences = {s: DetectorCadence(config) for s in students}
    for s in students:  # warm-up outside the timed part (same as the baseline)
        analyzers[s].analyze(frames[s][0])
        analyzers[s].close()
        analyzers[s] = FaceAnalyzer(config, static_image_mode=False)
        analyzers[s].analyze(frames[s][0])
    if detector is not None:
        detector.detect(frames[students[0]][0])
    ready.set()
    start.wait()
    t0, cpu0 = time.monotonic(), time.process_time()
    dets_out, faces_out, n_events = {}, {}, 0
    last_dets, prev, thumbs = {}, {}, {}
    for s, i, frame in interleaved(students, frames):
        t = i / STREAM_FPS
        mean, diff, prev[s] = camera_activity(frame, prev.get(s))
        motion, thumbs[s] = lower_half_motion(prev[s], thumbs.get(s))
        face = analyzers[s].analyze(frame)
        reason = cadences[s].due(t)
        ran = detector is not None and reason is not None
        if ran:
            cadences[s].ran(t, reason)
            last_dets[s] = (detector.detect(frame), t)
            dets_out[(s, i)] = det_key(last_dets[s][0])
        d, dt = last_dets.get(s, (None, None))
        cadences[s].observe(FrameResult(s, s, i + 1, t, 0.0, worker_id, face=face, detections=d if ran else None,
                                        detector_ran=ran, lower_motion=motion), d if ran else None)
        obs = FrameObservation(t=t, face=face, detections=d, detections_t=dt, frame_mean=mean, frame_diff=diff)
        for e in engine.evaluate(s, obs, t):
            warnings.on_event(s, e)
            n_events += 1
        faces_out[(s, i)] = face.face_count
    elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
    results.put((worker_id, t0, time.monotonic(), elapsed, dets_out, faces_out, n_events, cpu))


def run_ours(students, n_frames, workers, overrides):
    ctx = mp.get_context("spawn")
    groups = [students[w::workers] for w in range(workers)]
    groups = [g for g in groups if g]
    ready = [ctx.Event() for _ in groups]
    start = ctx.Event()
    results = ctx.Queue()
    procs = [ctx.Process(target=our_worker, args=(w, g, n_frames, overrides, ready[w], start, results))
             for w, g in enumerate(groups)]
    for p in procs:
        p.start()
    for r in ready:
        if not r.wait(600):
            raise SystemExit("a worker did not get ready within 600 s")
    wall0 = time.monotonic()
    start.set()
    outs = [results.get(timeout=1800) for _ in procs]
    wall = max(o[2] for o in outs) - wall0
    for p in procs:
        p.join(30)
    dets, faces, events = {}, {}, 0
    for o in outs:
        dets.update(o[4])
        faces.update(o[5])
        events += o[6]
    return wall, dets, faces, events, [round(o[3], 2) for o in outs], sum(o[7] for o in outs)


def run_baseline(students, n_frames, overrides):
    from config_vision import load_vision_config
    from decision_engine import DecisionEngine, FrameObservation
    from face_pipeline import FaceAnalyzer
    from person_pipeline import create_detector
    from warning_system import WarningSystem

    config = load_vision_config(**{**overrides, "DETECTOR_THREADS": os.cpu_count() or 2})
    frames = {s: student_frames(s, n_frames)[1] for s in students}
    faces_model = FaceAnalyzer(config, static_image_mode=True)  # one for everybody
    detector = create_detector(config)
    face_lock, det_lock = threading.Lock(), threading.Lock()  # one global lock per model
    engine, warnings = DecisionEngine(config), WarningSystem(config)
    faces_model.analyze(frames[students[0]][0])
    if detector is not None:
        detector.detect(frames[students[0]][0])
    t0, cpu0 = time.monotonic(), time.process_time()
    dets_out, faces_out, n_events, prev = {}, {}, 0, {}
    for s, i, frame in interleaved(students, frames):
        t = i / STREAM_FPS
        mean, diff, prev[s] = camera_activity(frame, prev.get(s))
        with face_lock:
            face = faces_model.analyze(frame)
        d = None
        if detector is not None:
            with det_lock:
                d = detector.detect(frame)
            dets_out[(s, i)] = det_key(d)
        obs = FrameObservation(t=t, face=face, detections=d, detections_t=t, frame_mean=mean, frame_diff=diff)
        for e in engine.evaluate(s, obs, t):
            warnings.on_event(s, e)
            n_events += 1
        faces_out[(s, i)] = face.face_count
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    faces_model.close()
    return wall, dets_out, faces_out, n_events, cpu


# ------------------------------------------------------------------ main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=6, help="simulated students (streams)")
    parser.add_argument("--frames", type=int, default=40, help="frames per student in part 2")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for our design")
    parser.add_argument("--stage-frames", type=int, default=30, help="frames per stage in part 1")
    parser.add_argument("--skip-stages", action="store_true", help="only part 2")
    parser.add_argument("--hand-look-frames", type=int, default=12,
                        help="frames per photo for the hand look's cost (DETECTOR_HAND_LOOK on vs off) in part 1")
    parser.add_argument("--hand-look-only", action="store_true", help="only the hand look's cost, then stop")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # figures appear as they are measured
    if not (1 <= args.students <= 64 and 2 <= args.frames <= 2000 and 1 <= args.workers <= 16 and args.stage_frames >= 3):
        parser.error("out of range: students 1..64, frames 2..2000, workers 1..16, stage-frames >= 3")

    from config_vision import load_vision_config
    from person_pipeline import create_detector

    config = load_vision_config()
    detector = create_detector(config)
    info = detector.info() if detector is not None else {"backend": "none (no model file)"}
    print(f"machine: {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f} at start; "
          f"frames {FRAME_SIZE[0]}x{FRAME_SIZE[1]}; detector {info.get('backend')} input {info.get('input_size')}; "
          f"detector by scene: DETECTOR_STEADY_INTERVAL_S={config.DETECTOR_STEADY_INTERVAL_S}, frame step {1 / STREAM_FPS:g} s")
    if detector is not None:
        detector.close()

    if args.hand_look_only:
        bench_hand_look(config, max(2, args.hand_look_frames))
        return 0
    if not args.skip_stages:
        print("\nPart 1: ms per frame, one process")
        print(f"  {'stage':<34} {'median':>8} {'p95':>8} {'n':>5}")
        for name, values in bench_stages(config, args.stage_frames).items():
            print(f"  {name:<34} {statistics.median(values):8.2f} {pct(values, 95):8.2f} {len(values):5d}")
        bench_hand_look(config, max(2, args.hand_look_frames))

    students = list(range(args.students))
    total = args.students * args.frames
    print(f"\nPart 2: whole pipeline, {args.students} students x {args.frames} frames = {total} frames")
    overrides = {}
    base_wall, base_dets, base_faces, base_events, base_cpu = run_baseline(students, args.frames, overrides)
    ours_wall, our_dets, our_faces, our_events, per_worker, our_cpu = run_ours(students, args.frames, args.workers, overrides)
    base_fps, ours_fps = total / base_wall, total / ours_wall
    print(f"  baseline (static FaceMesh, detector every frame, global locks, serial): "
          f"{base_wall:7.2f} s  {base_fps:7.1f} frames/s  {1000 * base_cpu / total:7.1f} CPU ms/frame  "
          f"({base_events} rule events)")
    print(f"  ours ({args.workers} workers, tracking FaceMesh, detector on {len(our_dets)} of {total} frames by scene, "
          f"per-worker models): {ours_wall:7.2f} s  {ours_fps:7.1f} frames/s  {1000 * our_cpu / total:7.1f} CPU ms/frame  "
          f"({our_events} rule events; worker busy s {per_worker})")
    print(f"  ratio ours / baseline: {ours_fps / base_fps:.2f}x frames/s (target >= 3x); "
          f"{base_cpu / our_cpu:.2f}x less CPU per frame")
    print(f"  load average at the end: {os.getloadavg()[0]:.1f} (other work on the machine skews wall-clock figures;"
          f" CPU ms/frame is less sensitive to it)")
    common = sorted(set(base_dets) & set(our_dets))
    same = sum(1 for k in common if base_dets[k] == our_dets[k])
    print(f"  same detections on the same frames: {same}/{len(common)} frames where both ran the detector"
          + ("" if same == len(common) else "  <-- DIFFERENT"))
    agree = sum(1 for k in base_faces if our_faces.get(k) == base_faces[k])
    print(f"  face count agreement (tracking vs static image mode): {agree}/{len(base_faces)} frames")
    groups = {w: [STUDENT_PHOTOS[s % len(STUDENT_PHOTOS)] for s in students[w::args.workers]] for w in range(args.workers)}
    print(f"  students per worker: {groups}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
