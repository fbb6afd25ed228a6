"""End-to-end load figures over real HTTP: the real server, N students posting webcam frames as the
exam page does, one admin watching the live events over Socket.IO.

    .venv/bin/python bench/http_load.py                              # 4 students, 2 fps, 10 s warm-up, 30 s
    .venv/bin/python bench/http_load.py --ramp 4,8,16,24,36          # the capacity ramp
    .venv/bin/python bench/http_load.py --ramp 2,4,6 --seconds 20 --workers 2 --json

The server is `python app.py` (eventlet, as scripts/start runs it) on a free port with a throw-away
SQLite database and data folder, on the default settings plus the environment you give it
(PROCTOR_* variables pass through) and `--workers` (PROCTOR_LIVE_WORKERS). Rate limits the bench
would hit are raised through their documented setting, and the run says so.

Setup, all through the real routes: the admin account comes from `flask --app app create-user`; the
admin logs in and creates a published exam with two questions (liveness required, no
auto-termination); each student, in parallel threads, signs up, accepts the rules, passes the
system check (upload test included), uploads a face photo, confirms identity with live captures
(a match and a head turn) and starts the exam. The admin's Socket.IO client joins /admin and keeps
every student's status push.

Each student is a thread with a keep-alive session that posts frames to /api/student-frame on a
fixed clock at --fps (JSON {image: data URL, ts} with the X-CSRFToken header, as proctor.js does),
never two at once: a slow answer delays the next frame, no burst follows. Frames are 640x480 JPEGs
(quality 70, the page's 0.7) of real photos in ../shared/testdata (one person, people with phones,
an empty room, two people), each shaken a little per frame, encoded once before the run.

`--ramp` uses ONE server: each step adds students to the ones already posting (setup runs while
they post), waits --warmup seconds, then measures --seconds. Per step it prints offered and analysed
frames/s, dropped frames, frame -> result latency (the server's), per-student analysed rates
(from the admin socket's status pushes), HTTP latency and errors, CPU of the web process, the vision
workers and the load generator, CPU ms per analysed frame, and the workers' stage medians; then the
capacity: the largest N with >= 90 % of offered frames analysed, p95 < 1 s and HTTP p99 < 50 ms.
Figures only: nothing is asserted. Other work on the machine moves them (the load average is printed).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._http_load_support import (PHOTOS, Browser, CeleryWorkers, Server, SetupError, cpu_snapshot, create_exam, redis_cpu_s,  # noqa: E402
                                      data_url, enrol_student, new_admin, percentile, registration_photo,
                                      webcam_jpegs)

FRAMES_PER_STUDENT = 8      # distinct frames cycled by each student
CAPACITY = {"analysed_share": 0.90, "latency_p95_ms": 1000.0, "http_p99_ms": 50.0}


# --- how a frame reaches the server (today: HTTP; a Socket.IO transport can be added here) ------------

class HttpFrames:
    """POST /api/student-frame as proctor.js and common.js postJSON do: JSON {image, ts}, X-CSRFToken."""

    name = "http"

    def __init__(self, browser: Browser):
        self.http, self.url = browser.http, browser.base + "/api/student-frame"
        self.headers = {"Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": browser.csrf}

    @staticmethod
    def prepare(jpeg: bytes) -> bytes:
        """What to keep per frame: the JSON body up to the time stamp, which is added when sent."""
        return b'{"image": "' + data_url(jpeg).encode("ascii") + b'", "ts": '

    def send(self, payload: bytes) -> int | str:
        try:
            r = self.http.post(self.url, data=payload + b"%d}" % int(time.time() * 1000), headers=self.headers, timeout=30)
            return r.status_code
        except Exception as exc:  # noqa: BLE001 - counted as an error of its kind
            return type(exc).__name__


class SocketFrames:
    """The exam page's default: a binary message "frame" {image: JPEG bytes, ts} on the student's own
    /student Socket.IO connection (websocket, login cookie), answered by an ack."""

    name = "socket"

    def __init__(self, browser: Browser):
        import socketio

        self.client = socketio.Client(reconnection=False)
        self.client.connect(browser.base, namespaces=["/student"], transports=["websocket"], wait_timeout=20,
                            headers={"Cookie": browser.cookie_header(), "User-Agent": browser.http.headers["User-Agent"]})

    @staticmethod
    def prepare(jpeg: bytes) -> bytes:
        return jpeg

    def send(self, payload: bytes) -> int | str:
        try:
            ack = self.client.call("frame", {"image": payload, "ts": int(time.time() * 1000)}, namespace="/student",
                                   timeout=30)
        except Exception as exc:  # noqa: BLE001
            return type(exc).__name__
        return 202 if isinstance(ack, dict) and "seq" in ack else (ack or {}).get("status", "bad ack")


TRANSPORTS = {"http": HttpFrames, "socket": SocketFrames}


class Thumbnails(threading.Thread):
    """The live grid (static/js/admin/monitor.js): each student's snapshot.jpg every THUMB_S, as an
    admin watching the dashboard fetches them."""

    THUMB_S = 2.0

    def __init__(self, admin: Browser, stop: threading.Event):
        super().__init__(name="admin-grid", daemon=True)
        self.admin, self.stop, self.students, self.fetched, self.failed = admin, stop, [], 0, 0

    def run(self):
        while not self.stop.is_set():
            ids = list(self.students)
            gap = self.THUMB_S / max(1, len(ids))
            for sid in ids:
                if self.stop.wait(gap):
                    return
                try:
                    r = self.admin.http.get(f"{self.admin.base}/admin/monitor/{sid}/snapshot.jpg", timeout=30)
                    self.fetched += r.status_code == 200
                    self.failed += r.status_code not in (200, 404)
                except Exception:  # noqa: BLE001
                    self.failed += 1
            if not ids and self.stop.wait(self.THUMB_S):
                return


class Sender(threading.Thread):
    """One student's camera: a frame every 1/fps s on a fixed clock, the next only after the last answer."""

    def __init__(self, k: int, transport, payloads: list, fps: float, stop: threading.Event):
        super().__init__(name=f"student-{k}", daemon=True)
        self.k, self.transport, self.payloads, self.period, self.stop = k, transport, payloads, 1.0 / fps, stop
        self.log: list[tuple[float, float, int | str]] = []  # (start, seconds, status)

    def run(self):
        nxt = time.monotonic() + (self.k * 0.618034 % 1.0) * self.period  # students spread over the period
        seq = self.k
        while not self.stop.is_set():
            delay = nxt - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                break
            t = time.monotonic()
            status = self.transport.send(self.payloads[seq % len(self.payloads)])
            self.log.append((t, time.monotonic() - t, status))
            seq += 1
            nxt = max(nxt + self.period, time.monotonic())  # late: the next frame at once, never a burst


# --- the admin's live view ------------------------------------------------------------------------------

class AdminMonitor:
    """A python-socketio client on /admin with the admin's login cookie: counts every event and keeps
    each session's status pushes as (time, frames processed, result_age_s)."""

    def __init__(self, admin: Browser):
        import socketio

        self.counts: Counter = Counter()
        self.status: dict[int, list] = defaultdict(list)
        self.lock = threading.Lock()
        self.client = socketio.Client(reconnection=False)
        self.client.on("*", self._event, namespace="/admin")
        self.client.connect(admin.base, namespaces=["/admin"], transports=["websocket"], wait_timeout=20,
                            headers={"Cookie": admin.cookie_header(), "User-Agent": admin.http.headers["User-Agent"]})

    def _event(self, event, data=None):
        now = time.monotonic()
        with self.lock:
            self.counts[event] += 1
            if event == "student_status" and isinstance(data, dict):
                st = data.get("status") or {}
                self.status[data.get("session_id")].append((now, (st.get("frames") or {}).get("processed"),
                                                            st.get("result_age_s")))

    def window(self, t0: float, t1: float, sessions: list[int]) -> tuple[list, list]:
        """(analysed frames/s of each session, None without two pushes; result ages) within [t0, t1]."""
        rates, ages = [], []
        with self.lock:
            for sid in sessions:
                pts = [p for p in self.status.get(sid, []) if t0 <= p[0] <= t1 and p[1] is not None]
                ages += [p[2] for p in pts if p[2] is not None]
                ok = len(pts) >= 2 and pts[-1][0] > pts[0][0]
                rates.append((pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0]) if ok else None)
        return rates, ages


# --- settings, setup, one measured window -------------------------------------------------------------------

def server_settings(args) -> tuple[dict, list[str]]:
    """Environment for the server beyond the defaults, and a note for every limit raised."""
    from limits import parse_many

    from proctor.settings import read

    settings, notes = {}, []
    if args.workers:
        settings["PROCTOR_LIVE_WORKERS"] = str(args.workers)
    if args.celery_workers:
        settings["PROCTOR_BROKER_URL"] = args.broker
        settings["PROCTOR_BROKER_NAMESPACE"] = f"bench{os.getpid()}"
    logins = max(args.ramp) + 5  # every student signs up, the admin logs in, all from 127.0.0.1
    current = read(os.environ, "LOGIN_LIMIT_PER_ADDRESS")
    if any(item.amount < logins for item in parse_many(current)):
        settings["LOGIN_LIMIT_PER_ADDRESS"] = f"{logins} per minute"
        notes.append(f"LOGIN_LIMIT_PER_ADDRESS raised from '{current}' to '{logins} per minute': every bench student "
                     "signs up from 127.0.0.1")
    frames = read(os.environ, "PROCTOR_FRAME_RATE_LIMIT")
    need = 2 * args.fps  # one late frame may follow the previous one at once
    if any(item.amount / item.get_expiry() < need for item in parse_many(frames)):
        settings["PROCTOR_FRAME_RATE_LIMIT"] = f"{math.ceil(need)} per second"
        notes.append(f"PROCTOR_FRAME_RATE_LIMIT '{frames}' is below {need:g} frames/s per student; raised to "
                     f"'{math.ceil(need)} per second'")
    return settings, notes


def student_photo(k: int, mix: str) -> str:
    """What student k's camera shows. stress: the six scenes in turn (one honest student in six; the
    others show people with phones, an empty room, two people, someone else). hall: an exam hall -
    five students in six alone at their desk and registered as themselves (a_1), the sixth one of
    the stress scenes in turn."""
    if mix == "stress":
        return PHOTOS[k % len(PHOTOS)]
    if k % 6 != 5:
        return PHOTOS[0]
    return PHOTOS[1 + (k // 6) % (len(PHOTOS) - 1)]


def enrol(server, exam_id, indices, args, transport, stop, payload_cache) -> tuple[list, float, list[float]]:
    """Students with these indices set up in parallel; each starts posting when its exam page is open."""
    def one(k):
        photo = student_photo(k, args.mix)
        browser, session_id, took = enrol_student(server, k, exam_id, registration_photo(photo))
        if photo not in payload_cache:
            payload_cache[photo] = [transport.prepare(j) for j in webcam_jpegs(photo, FRAMES_PER_STUDENT, args.quality)]
        sender = Sender(k, transport(browser), payload_cache[photo], args.fps, stop)
        sender.session_id, sender.photo = session_id, photo
        sender.student_id = browser.http.get(browser.base + "/api/me", timeout=30).json()["id"]
        sender.start()
        return sender, took

    t0, out, times = time.monotonic(), [], []
    with ThreadPoolExecutor(max_workers=args.setup_threads) as pool:
        for fut in as_completed([pool.submit(one, k) for k in indices]):
            sender, took = fut.result()
            out.append(sender)
            times.append(took)
    return out, time.monotonic() - t0, times


def pipeline(admin: Browser) -> dict:
    return admin.http.get(admin.base + "/api/detection-pipeline-status", timeout=30).json()


def measure(server, admin, monitor, senders, args) -> dict:
    p0 = pipeline(admin)
    workers = {w["pid"] for w in p0["workers"]["workers"] if w["pid"]}
    broker = server.env.get("PROCTOR_BROKER_URL")
    redis0 = redis_cpu_s(broker) if broker else 0.0
    cpu0, self0, ev0, t0 = cpu_snapshot(server.proc.pid, workers), resource.getrusage(resource.RUSAGE_SELF), \
        Counter(monitor.counts), time.monotonic()
    worst_p95 = 0.0
    while (left := t0 + args.seconds - time.monotonic()) > 0:
        time.sleep(min(5.0, left))
        worst_p95 = max(worst_p95, (pipeline(admin).get("latency_ms") or {}).get("p95") or 0.0)
    t1 = time.monotonic()
    cpu1, self1, p1 = cpu_snapshot(server.proc.pid, workers), resource.getrusage(resource.RUSAGE_SELF), pipeline(admin)
    elapsed = t1 - t0
    sends = [(lat, status) for s in senders for (t, lat, status) in list(s.log) if t0 <= t < t1]
    http_ms = [lat * 1000 for lat, _ in sends]
    errors = Counter(str(status) for _, status in sends if status != 202)
    analysed = p1["counters"]["processed"] - p0["counters"]["processed"]
    received = p1["frames"]["received"] - p0["frames"]["received"]
    dropped = p1["frames"]["dropped"] - p0["frames"]["dropped"]
    each, ages = monitor.window(t0, t1, [s.session_id for s in senders])
    rates, missing = [r for r in each if r is not None], each.count(None)
    cpu = {k: cpu1[k] - cpu0[k] for k in cpu0}
    if broker:  # the distributed mode's Redis works for the server: its CPU counts as "other"
        cpu["other"] += redis_cpu_s(broker) - redis0
    lat = p1.get("latency_ms") or {}
    r2 = lambda x: None if x is None else round(x, 2)  # noqa: E731

    def per_student_min(name):
        if name not in p1["counters"]:
            return None  # a server from before these counters
        return round((p1["counters"][name] - p0["counters"][name]) / len(senders) / (elapsed / 60), 1)

    step = {
        "students": len(senders), "seconds": round(elapsed, 1), "target_fps": round(len(senders) * args.fps, 2),
        "offered_fps": round(len(sends) / elapsed, 2), "received_fps": round(received / elapsed, 2),
        "analysed_fps": round(analysed / elapsed, 2),
        "analysed_share": round(analysed / len(sends), 3) if sends else None,
        "dropped_share": round(dropped / received, 3) if received else None,
        "latency_ms": {"p50": lat.get("median"), "p95": lat.get("p95"), "samples": lat.get("samples"),
                       "samples_in_window": min(lat.get("samples") or 0, analysed), "worst_p95_polled": worst_p95 or None},
        "result_age_s": {"p50": r2(percentile(ages, 50)), "p95": r2(percentile(ages, 95))},
        "per_student_fps": {"min": r2(min(rates, default=None)), "median": r2(statistics.median(rates) if rates else None),
                            "max": r2(max(rates, default=None)), "without_status": missing,
                            "slowest": sorted((r2(r), s.photo) for r, s in zip(each, senders) if r is not None)[:3]},
        "http_ms": {"p50": r2(percentile(http_ms, 50)), "p99": r2(percentile(http_ms, 99)), "requests": len(sends)},
        "http_errors": dict(errors),
        "cpu_pct": {"web": round(100 * cpu["web"] / elapsed, 1), "workers": round(100 * cpu["workers"] / elapsed, 1),
                    "other": round(100 * cpu["other"] / elapsed, 1),
                    "load_generator": round(100 * (self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime)
                                            / elapsed, 1)},
        "cpu_ms_per_frame": round(1000 * sum(cpu.values()) / analysed, 1) if analysed else None,
        "stage_ms": p1.get("stage_ms"),
        # per student-minute, and the workers' mean CPU per job (the stage medians hide the rare costly jobs)
        "detector_runs_per_student_min": per_student_min("detector_runs"),
        "identity_runs_per_student_min": per_student_min("identity_runs"),
        "worker_cpu_ms_per_job": round((p1.get("worker_cpu_ms", 0) - p0.get("worker_cpu_ms", 0)) / analysed, 1) if analysed else None,
        "admin_events": dict(Counter(monitor.counts) - ev0),
        "violations": p1["counters"]["violations"] - p0["counters"]["violations"],
        "worker_restarts": p1["workers"]["restarts"],
    }
    step["within_capacity"] = bool(
        step["analysed_share"] is not None and step["analysed_share"] >= CAPACITY["analysed_share"]
        and (lat.get("p95") or math.inf) < CAPACITY["latency_p95_ms"]
        and (step["http_ms"]["p99"] or math.inf) < CAPACITY["http_p99_ms"])
    return step


# --- output ---------------------------------------------------------------------------------------------------

COLUMNS = ("   N  target/s offered/s analysed/s anal%  drop%  lat p50/p95 ms  per-student/s min/med/max  "
           "HTTP p50/p99 ms  errors  CPU% web/workers/other gen  CPU ms/frame")


def row(s: dict) -> str:
    f = lambda v, spec=".1f": "-" if v is None else format(v, spec)  # noqa: E731
    pct = lambda v: "-" if v is None else f"{100 * v:.0f}"  # noqa: E731
    ps, c = s["per_student_fps"], s["cpu_pct"]
    return (f"{s['students']:>4}  {s['target_fps']:>8.1f} {s['offered_fps']:>9.1f} {s['analysed_fps']:>10.1f} "
            f"{pct(s['analysed_share']):>5} {pct(s['dropped_share']):>5}  "
            f"{f(s['latency_ms']['p50'], '.0f'):>6}/{f(s['latency_ms']['p95'], '.0f'):<7}  "
            f"{f(ps['min'], '.2f'):>8}/{f(ps['median'], '.2f')}/{f(ps['max'], '.2f'):<10}  "
            f"{f(s['http_ms']['p50']):>7}/{f(s['http_ms']['p99']):<7} {sum(s['http_errors'].values()):>7}  "
            f"{c['web']:>6.0f}/{c['workers']:.0f}/{c['other']:.0f} {c['load_generator']:>8.0f}  {f(s['cpu_ms_per_frame']):>12}")


def capacity(steps: list[dict]) -> int | None:
    return max((s["students"] for s in steps if s["within_capacity"]), default=None)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--students", type=int, help="one run with this many students (same as --ramp N)")
    p.add_argument("--ramp", default="4", help="comma-separated student counts, one server, students added (default 4)")
    p.add_argument("--fps", type=float, default=2.0, help="frames per second per student (default 2, the exam page's)")
    p.add_argument("--seconds", type=float, default=30.0, help="measured window per step (default 30)")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds of posting before each window (default 10)")
    p.add_argument("--workers", type=int, help="PROCTOR_LIVE_WORKERS (default: the server's default)")
    p.add_argument("--celery-workers", type=int, default=0,
                   help="distributed mode: start this many scripts/worker processes and point the server at --broker "
                        "(default 0: the embedded mode)")
    p.add_argument("--broker", default="redis://127.0.0.1:6379/13", help="Redis for --celery-workers (default db 13)")
    p.add_argument("--transport", choices=sorted(TRANSPORTS), default="http", help="how frames are sent (default http)")
    p.add_argument("--mix", choices=("hall", "stress"), default="stress",
                   help="what the cameras show: stress (default; one honest student in six) or hall (five in six)")
    p.add_argument("--no-thumbnails", dest="thumbnails", action="store_false",
                   help="no admin grid: by default the admin fetches every student's thumbnail every 2 s, as the live grid does")
    p.add_argument("--quality", type=int, default=70, help="JPEG quality of the frames (default 70)")
    p.add_argument("--setup-threads", type=int, default=8, help="students set up at once (default 8)")
    p.add_argument("--keep", action="store_true", help="keep the server's temp folder (database, log)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = p.parse_args(argv)
    try:
        args.ramp = [args.students] if args.students else [int(x) for x in args.ramp.split(",") if x.strip()]
    except ValueError:
        p.error("--ramp takes numbers such as 4,8,16")
    if not args.ramp or args.ramp != sorted(set(args.ramp)) or args.ramp[0] < 1 or args.ramp[-1] > 500:
        p.error("--ramp: increasing student counts from 1 to 500")
    if not 0.1 <= args.fps <= 30 or args.seconds <= 0 or args.warmup < 0 or not 1 <= args.quality <= 100:
        p.error("fps 0.1..30, seconds > 0, warmup >= 0, quality 1..100")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    settings, notes = server_settings(args)
    report = {"date": datetime.now().astimezone().isoformat(timespec="seconds"),
              "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "load_average_start": os.getloadavg()},
              "options": {k: v for k, v in vars(args).items() if k not in ("json", "keep", "students")},
              "server_settings": settings, "notes": notes, "setup": [], "steps": []}
    say(f"{report['date']}  {os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for note in notes:
        say("note: " + note)
    transport, stop = TRANSPORTS[args.transport], threading.Event()
    server = Server(Path(tempfile.mkdtemp(prefix="http_load_")), settings)
    celery_workers = CeleryWorkers(args.celery_workers, server.root, server.env) if args.celery_workers else None
    senders, monitor, payloads, status = [], None, {}, 0
    try:
        t = time.monotonic()
        if celery_workers is not None:
            celery_workers.start()
        server.start()
        admin, _ = new_admin(server)
        exam_id = create_exam(admin, "Load exam")
        monitor = AdminMonitor(admin)
        grid = Thumbnails(admin, stop)
        if args.thumbnails:
            grid.start()
        say(f"server {server.url} up, admin and exam {exam_id} made in {time.monotonic() - t:.1f} s "
            f"(log {server.log_path})")
        for n in args.ramp:
            new, took, each = enrol(server, exam_id, range(len(senders), n), args, transport, stop, payloads)
            senders += new
            grid.students = [x.student_id for x in senders]
            setup = {"students": n, "added": len(new), "seconds": round(took, 1),
                     "per_student_s": {"median": round(statistics.median(each), 1), "max": round(max(each), 1)}}
            if len(report["setup"]) == 0:
                setup["workers_ready_after_s"] = round(server.wait_workers_ready(), 1)
            report["setup"].append(setup)
            say(f"setup: {len(new)} students added in {took:.1f} s (each {setup['per_student_s']['median']} s median, "
                f"{setup['per_student_s']['max']} s max); warm-up {args.warmup:g} s, then {args.seconds:g} s measured")
            time.sleep(args.warmup)
            thumbs0 = grid.fetched
            step = measure(server, admin, monitor, senders, args)
            step["thumbnails_per_s"] = round((grid.fetched - thumbs0) / step["seconds"], 2)
            report["steps"].append(step)
            if not args.json:
                print(("\n" + COLUMNS + "\n" if len(report["steps"]) == 1 else "") + row(step), flush=True)
    except (SetupError, OSError, ValueError, requests.RequestException) as exc:
        say(f"stopped: {exc}")
        report["error"], status = str(exc), 1
    finally:
        stop.set()
        for s in senders:
            s.join(timeout=35)
        if monitor is not None:
            monitor.client.disconnect()
        server.stop()
        if celery_workers is not None:
            celery_workers.stop()
        if not args.keep:
            server.remove()
    report["machine"]["load_average_end"] = os.getloadavg()
    report["capacity"] = capacity(report["steps"])
    report["capacity_rule"] = CAPACITY
    if args.json:
        print(json.dumps(report))
        return status
    for s in report["steps"]:
        print(f"  N={s['students']}: stage ms median {s['stage_ms']}; worker CPU ms per job (mean) {s['worker_cpu_ms_per_job']}; "
              f"per student-minute: detector {s['detector_runs_per_student_min']}, identity {s['identity_runs_per_student_min']}; events {s['admin_events']}; "
              f"HTTP errors {s['http_errors'] or 'none'}; violations {s['violations']}; "
              f"latency over the server's last {s['latency_ms']['samples']} results ({s['latency_ms']['samples_in_window']} "
              f"in the window), p95 worst 5 s poll {s['latency_ms']['worst_p95_polled']} ms; "
              f"result age at status push p50/p95 {s['result_age_s']['p50']}/{s['result_age_s']['p95']} s; "
              f"slowest students {s['per_student_fps']['slowest']}")
    cap = report["capacity"]
    print(f"capacity: {'N=' + str(cap) if cap else 'none of the N tried'} (the largest N with >= 90 % of offered frames "
          f"analysed, p95 < 1 s and HTTP p99 < 50 ms)")
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}; transport {args.transport}, "
          f"admin grid thumbnails {'on' if args.thumbnails else 'off'}, mix {args.mix}, "
          f"{args.fps:g} fps, " + (f"{args.celery_workers} Celery workers (distributed mode, {args.broker})"
                                   if args.celery_workers else f"workers {settings.get('PROCTOR_LIVE_WORKERS', 'default')}"))
    return status


if __name__ == "__main__":
    sys.exit(main())
