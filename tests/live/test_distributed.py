"""The distributed mode with real parts: the real Redis, real `scripts/worker` Celery processes running
the real models on real photos, and the web side's RemotePool driven as the runtime drives it.

- results equal what the embedded pipeline gives for the same frames;
- a student stays on the worker that analysed its last frame;
- a worker killed mid-exam: its students are analysed by the other within 10 s, no frame twice;
- a frame that waited too long is not analysed; a task naming another runtime's key is refused;
- Redis restarted (a private redis-server of the test's own): web side and workers carry on by themselves;
- Redis unreachable: the web side says no, raises nothing, and tells why in its status.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections import defaultdict

import cv2
import pytest

from proctor.live.broker import job_key, make_celery, results_key
from proctor.live.pipeline import FrameJob, FramePipeline
from proctor.live.remote import RemotePool
from proctor.live.wire import dump_job
from tests.conftest import REPO_ROOT, free_port, stop_process
from tests.live import fit, load_photo, wait_for

pytestmark = pytest.mark.timeout(600)

REDIS_URL = os.environ.get("PROCTOR_TEST_REDIS_URL", "redis://127.0.0.1:6379") + "/12"
READY_TIMEOUT_S = 240
PHOTOS = {1: "a_1_webcam_woman_T1.jpg", 2: "e_5_zidane_two_men.jpg", 3: "f_5_living_room_empty.jpg"}


@pytest.fixture(scope="module")
def config():
    from config_vision import load_vision_config

    return load_vision_config(env={})


@pytest.fixture(scope="module")
def jpegs():
    return {sid: cv2.imencode(".jpg", fit(load_photo(name)), [int(cv2.IMWRITE_JPEG_QUALITY), 80])[1].tobytes()
            for sid, name in PHOTOS.items()}


def _redis(url=REDIS_URL):
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not reachable at {url}: {exc} (scripts/test starts it)")
    return client


class Workers:
    """`scripts/worker` processes (the README's command) in their own namespace."""

    def __init__(self, tmp_path, url: str, ns: str):
        self.tmp, self.url, self.ns, self.procs = tmp_path, url, ns, {}

    def start(self, name: str) -> subprocess.Popen:
        env = {**os.environ, "PROCTOR_BROKER_URL": self.url, "PROCTOR_BROKER_NAMESPACE": self.ns, "PYTHONUNBUFFERED": "1"}
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([str(REPO_ROOT / "scripts" / "worker"), "-n", f"{name}@%h"], cwd=REPO_ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_process(proc)


@pytest.fixture
def namespace():
    ns = f"t{uuid.uuid4().hex[:10]}"
    yield ns
    client = _redis()
    for key in client.scan_iter(match=f"{ns}*"):
        client.delete(key)


class PrivateRedis:
    """A redis-server of the test's own (keeps nothing on disk), so that it can be stopped and restarted."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self) -> "PrivateRedis":
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(lambda: _ping(self.url), 30, "private redis-server did not start", interval=0.2)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def _ready_workers(pool: RemotePool, names: set[str]):
    def ready():
        pool._read_workers(force=True)
        return all(any(n.startswith(name + "@") and w.get("ready") for n, w in pool._workers.items()) for name in names)
    return ready


def _stream(pool, jpegs, students, until, results, seq, step=None):
    """Post each student's frame whenever it has no job out (as the runtime does) until until()."""
    deadline = time.monotonic() + 120
    while not until():
        assert time.monotonic() < deadline, f"gave up streaming: {pool.status()}"
        for sid in students:
            if pool.can_take(sid):
                seq[sid] += 1
                assert pool.submit(FrameJob(sid, sid * 10, seq[sid], float(seq[sid]), time.monotonic(),
                                            jpeg=jpegs[sid], run_detector=seq[sid] % 2 == 1))
        for r in pool.results():
            results[r.student_id].append(r)
        if step is not None:
            step()
        time.sleep(0.02)


def test_remote_workers_judge_as_the_embedded_pipeline_stick_and_take_over(tmp_path, config, jpegs, namespace):
    workers = Workers(tmp_path, REDIS_URL, namespace)
    pool = RemotePool(REDIS_URL, config, namespace)
    try:
        workers.start("alpha")
        workers.start("beta")
        pool.start()  # publishes the vision settings the workers wait for
        wait_for(_ready_workers(pool, {"alpha", "beta"}), READY_TIMEOUT_S,
                 f"workers not ready: {pool.status()}\n{workers.log('alpha')}", interval=0.5)

        results, seq = defaultdict(list), defaultdict(int)
        _stream(pool, jpegs, PHOTOS, lambda: all(len(results[s]) >= 8 for s in PHOTOS), results, seq)

        # Same judgement as the embedded pipeline on the same frames.
        local = FramePipeline(config)
        try:
            for sid in PHOTOS:
                want = local.process(FrameJob(sid, sid * 10, 1, 1.0, time.monotonic(), jpeg=jpegs[sid], run_detector=True))
                got = next(r for r in results[sid] if r.detector_ran)
                assert not got.errors, got.errors
                assert got.face.face_count == want.face.face_count, PHOTOS[sid]
                assert got.face.face_detected == want.face.face_detected
                assert [d.label for d in got.detections.items] == [d.label for d in want.detections.items], PHOTOS[sid]
        finally:
            local.close()
        assert [r.face.face_count for r in results[2]][-1] == 2 and not results[3][-1].face.face_detected

        # Sticky: a student stays on its worker; a move by measured cost happens at most once in
        # MOVE_COOLDOWN_S (30 s, longer than this stream).
        for sid in PHOTOS:
            ids = [r.worker_id for r in results[sid]]
            assert sum(a != b for a, b in zip(ids, ids[1:])) <= 1, (sid, ids)
        for sid in PHOTOS:
            assert sorted(r.seq for r in results[sid]) == sorted({r.seq for r in results[sid]})  # none twice

        # Kill one worker outright (no goodbye: its heartbeat just stops) while the students stream.
        names = {v: k for k, v in pool._worker_ids.items()}
        victim = names[results[1][-1].worker_id]
        survivor = next(n for n in pool._workers if n != victim)
        proc = workers.procs[victim.split("@")[0]]
        os.killpg(proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        before = {sid: len(results[sid]) for sid in PHOTOS}
        survivor_id = pool._worker_id(survivor)

        def all_back_on_survivor():
            return all(any(r.worker_id == survivor_id for r in results[sid][before[sid]:]) for sid in PHOTOS)
        _stream(pool, jpegs, PHOTOS, all_back_on_survivor, results, seq)
        took = time.monotonic() - killed_at
        assert took < 10.0, f"students back after {took:.1f} s"
        for sid in PHOTOS:
            seqs = [r.seq for r in results[sid]]
            assert len(seqs) == len(set(seqs)), seqs  # no frame analysed twice
        status = pool.status()
        assert [w["name"] for w in status["workers"]] == [survivor]
        assert status["jobs_lost"] <= len(PHOTOS)
    finally:
        pool.stop()
        workers.stop()


def test_stale_and_foreign_jobs_are_not_analysed(tmp_path, config, jpegs, namespace):
    workers = Workers(tmp_path, REDIS_URL, namespace)
    pool = RemotePool(REDIS_URL, config, namespace)
    client = _redis()
    try:
        workers.start("gamma")
        pool.start()
        wait_for(_ready_workers(pool, {"gamma"}), READY_TIMEOUT_S, f"worker not ready\n{workers.log('gamma')}", interval=0.5)
        celery = make_celery(REDIS_URL, namespace)

        # A frame handed over 10 s ago: answered "skipped", never analysed.
        key = job_key(namespace, pool.runtime_id, 1)
        client.set(key, dump_job(FrameJob(1, 10, 5, 5.0, time.monotonic(), jpeg=jpegs[1]), time.time() - 10), ex=30)
        pool._inflight[1] = (time.monotonic() + 30, None, time.monotonic())
        celery.send_task("proctor.analyse", args=[pool.runtime_id, 1, key])
        wait_for(lambda: pool.results() == [] and pool.jobs_skipped == 1, 60, f"no skip answer: {pool.status()}",
                 interval=0.1)
        assert 1 not in pool._inflight and client.get(key) is None

        # A task naming a key that is not that student's of that runtime: refused, the key untouched.
        other = job_key(namespace, "someoneelse", 2)
        client.set(other, dump_job(FrameJob(2, 20, 1, 1.0, time.monotonic(), jpeg=jpegs[2]), time.time()), ex=30)
        celery.send_task("proctor.analyse", args=[pool.runtime_id, 2, other])
        celery.send_task("proctor.analyse", args=[pool.runtime_id, 3, job_key(namespace, pool.runtime_id, 2)])
        # A real job after them: once it is answered, the worker has passed the two refused tasks.
        assert pool.submit(FrameJob(1, 10, 6, 6.0, time.monotonic(), jpeg=jpegs[1]))
        got = wait_for(lambda: pool.results(), 60, "the real job got no answer", interval=0.1)
        assert [r.seq for r in got] == [6]
        assert client.get(other) is not None
        assert client.llen(results_key(namespace, "someoneelse")) == 0
        assert "refused" in workers.log("gamma") or "is not student" in workers.log("gamma")
    finally:
        pool.stop()
        workers.stop()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server program for a private Redis")
def test_redis_restart_the_web_side_and_workers_carry_on(tmp_path, config, jpegs):
    redis_server = PrivateRedis().start()
    url = redis_server.url
    workers = Workers(tmp_path, url, "restart")
    pool = RemotePool(url, config, "restart")
    try:
        workers.start("delta")
        pool.start()
        wait_for(_ready_workers(pool, {"delta"}), READY_TIMEOUT_S, f"worker not ready\n{workers.log('delta')}", interval=0.5)
        results, seq = defaultdict(list), defaultdict(int)
        _stream(pool, jpegs, [1], lambda: len(results[1]) >= 3, results, seq)

        redis_server.stop()  # Redis goes away: it kept nothing (no save), like a restart without persistence
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert pool.results() == []
            pool.submit(FrameJob(1, 10, 999, 999.0, time.monotonic(), jpeg=jpegs[1]))  # False or lost: never raises
            time.sleep(0.1)
        assert pool.status()["redis_errors"] >= 1 and pool.status()["last_error"]

        redis_server.start()
        n = len(results[1])
        _stream(pool, jpegs, [1], lambda: len(results[1]) >= n + 3, results, seq)
        assert results[1][-1].face.face_detected
    finally:
        pool.stop()
        workers.stop()
        redis_server.stop()


def _ping(url) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def test_unreachable_redis_is_said_not_raised(config):
    pool = RemotePool(f"redis://127.0.0.1:{free_port()}/0", config, "nowhere")
    pool.start()
    assert pool.can_take(1) is False
    assert pool.submit(FrameJob(1, 1, 1, 1.0, time.monotonic(), jpeg=b"\xff\xd8")) is False
    assert pool.results() == []
    status = pool.status()
    assert status["workers"] == [] and status["redis_errors"] >= 1 and "Error" in status["last_error"]
    assert pool.detector_info()["loaded"] is False
    assert pool.health()["broker_ok"] is False


def test_broker_settings_are_validated():
    from proctor.settings import ConfigError, check_config

    with pytest.raises(ConfigError, match="Redis URL"):
        check_config({"PROCTOR_BROKER_URL": "amqp://guest@localhost//"})
    with pytest.raises(ConfigError, match="namespace"):
        check_config({"PROCTOR_BROKER_URL": "redis://127.0.0.1:6379/0", "PROCTOR_BROKER_NAMESPACE": "a b"})
    check_config({"PROCTOR_BROKER_URL": "redis://:secret@10.0.0.5:6379/0", "PROCTOR_BROKER_NAMESPACE": "school-a"})
    pool = RemotePool("redis://:secret@10.0.0.5:6379/0", None, "school-a")
    assert "secret" not in str(pool.status()["broker"])
