"""Load figures for the live runtime: N simulated students posting frames at F fps.

    .venv/bin/python bench/live_load.py --students 4 --workers 2 --fps 2 --seconds 30

Each student is a thread that submits a frame (a real photo from ../shared/testdata, shaken a
little per frame as a webcam's picture moves) to runtime.submit_frame every 1/F s, exactly as the
upload route does after decoding. The runtime runs for real: worker processes, decisions,
warnings, violations in a throw-away SQLite database, evidence and clips in a temp folder.
Prints processed frames/s, dropped frames (latest-frame-wins replacements), and latency from
frame arrival to its result in the main process (median, p95), plus worker stage medians.
Figures only: nothing is asserted. The machine's load (other processes) changes them.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

PHOTOS = ("a_1_webcam_woman_T1.jpg", "a_6_grace_hopper.jpg", "c_1_coco446_woman_bookshelf.jpg",
          "b_3_coco536_women_on_phones.jpg", "f_5_living_room_empty.jpg", "e_5_zidane_two_men.jpg")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--students", type=int, default=4, help="simulated students (default 4)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--fps", type=float, default=2.0, help="frames per second per student (default 2)")
    p.add_argument("--seconds", type=float, default=30.0, help="how long to post frames (default 30)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = p.parse_args(argv)
    if not 1 <= args.students <= 200 or not 1 <= args.workers <= 16 or not 0.1 <= args.fps <= 30 or args.seconds <= 0:
        p.error("students 1..200, workers 1..16, fps 0.1..30, seconds > 0")
    return args


def _frames(width, height):
    import cv2

    from tests.live import live_frame
    from tests.vision.conftest import TESTDATA

    out = []
    for name in PHOTOS:
        img = cv2.imread(str(TESTDATA / name), cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"test photo {name} not found under {TESTDATA} (set PROCTOR_TESTDATA)")
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
        out.append([live_frame(img, i) for i in range(8)])
    return out


def _seed(app, n):
    from proctor import exam_service
    from proctor.accounts import create_account
    from proctor.extensions import db
    from proctor.models import Exam, Question

    with app.app_context():
        exam = Exam(title="Load exam", description="", duration_minutes=120, is_published=True)
        db.session.add(exam)
        db.session.flush()
        q = Question(exam_id=exam.id, text="?", correct_index=0, position=0, points=1)
        q.options = ["a", "b"]
        db.session.add(q)
        db.session.commit()
        pairs = []
        for i in range(n):
            s = create_account(f"Load Student {i}", f"load{i}@example.edu", "correct horse battery")
            pairs.append((s.id, exam_service.start_session(s.id, exam.id).id))
        return pairs


def main(argv=None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="live_load_"))
    from proctor import create_app, init_db
    from proctor.live import get_runtime

    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp / 'load.db'}", "INSTANCE_PATH": tmp,
                      "PROCTOR_DATA_DIR": str(tmp / "data"), "SECRET_KEY": "bench-" + "x" * 20,
                      "PROCTOR_ASYNC_MODE": "threading", "PROCTOR_LIVE_WORKERS": args.workers})
    init_db(app)
    pairs = _seed(app, args.students)
    frames = _frames(args.width, args.height)
    rt = get_runtime(app)
    rt.worker_count = args.workers
    t_start = time.monotonic()
    rt.start()
    while not all(w["ready"] for w in rt.pipeline_status()["workers"]["workers"]):
        if time.monotonic() - t_start > 300:
            raise SystemExit(f"workers not ready after 300 s: {rt.pipeline_status()['workers']}")
        time.sleep(0.1)
    ready_s = time.monotonic() - t_start
    for sid, sess in pairs:
        rt.session_started(sid, sess)
    base = rt.pipeline_status()["counters"]["processed"]
    stop = threading.Event()
    period = 1.0 / args.fps

    def student(k, sid, sess):
        seq = 0
        photo = frames[k % len(frames)]
        nxt = time.monotonic() + (k * period / max(1, args.students))  # spread the students over the period
        while not stop.is_set():
            delay = nxt - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            rt.submit_frame(sid, sess, photo[seq % len(photo)], int(time.time() * 1000))
            seq += 1
            nxt += period

    def cpu_s(pid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None

    pids = [w["pid"] for w in rt.pipeline_status()["workers"]["workers"]]
    cpu_before = [cpu_s(p) for p in pids]
    threads = [threading.Thread(target=student, args=(k, sid, sess), daemon=True) for k, (sid, sess) in enumerate(pairs)]
    rt.stats.latencies.clear()
    t0 = time.monotonic()
    for th in threads:
        th.start()
    time.sleep(args.seconds)
    stop.set()
    for th in threads:
        th.join()
    elapsed = time.monotonic() - t0
    cpu_after = [cpu_s(p) for p in pids]
    time.sleep(1.0)  # let the frames in flight finish
    st = rt.pipeline_status()
    lat = sorted(rt.stats.latencies)
    totals = st["frames"]
    processed = st["counters"]["processed"] - base
    figures = {
        "students": args.students, "workers": args.workers, "fps_per_student": args.fps, "seconds": round(elapsed, 1),
        "frame_size": f"{args.width}x{args.height}", "workers_ready_s": round(ready_s, 1),
        "frames_posted": totals["received"], "frames_processed": processed,
        "processed_per_s": round(processed / elapsed, 2), "offered_per_s": round(args.students * args.fps, 2),
        "dropped": totals["dropped"], "dropped_pct": round(100.0 * totals["dropped"] / max(1, totals["received"]), 1),
        "latency_ms": {"median": round(statistics.median(lat) * 1000, 1) if lat else None,
                       "p95": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))] * 1000, 1) if lat else None},
        "worker_stage_ms_median": st["stage_ms"],
        # CPU seconds each worker process used per wall second while frames were posted (1.0 = a whole core).
        "worker_cpu_per_s": [None if a is None or b is None else round((b - a) / elapsed, 2)
                             for a, b in zip(cpu_before, cpu_after)], "violations": st["counters"]["violations"],
        "clips_written": st["counters"]["clips_written"], "worker_restarts": st["workers"]["restarts"],
        "load_average": os.getloadavg(),
    }
    rt.stop()
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>24}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
