"""CPU-heavy work (face inference in a request) off the event loop, with a timeout.

Under eventlet the work runs in eventlet's native thread pool (tpool), else in a small
ThreadPoolExecutor. `InstancePool` lends instances of a non-thread-safe analyser, one request
at a time.
"""
from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _green() -> bool:
    try:
        import eventlet.patcher

        return eventlet.patcher.is_monkey_patched("thread")
    except ImportError:
        return False


def run_blocking(fn, *args, timeout_s: float):
    """fn(*args) off the event loop; TimeoutError if it takes longer than timeout_s."""
    timeout_s = float(timeout_s)
    if _green():
        import eventlet
        from eventlet import tpool

        with eventlet.Timeout(timeout_s, TimeoutError(f"inference took more than {timeout_s:g} s")):
            return tpool.execute(fn, *args)
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="exam-inference")
    future = _executor.submit(fn, *args)
    try:
        return future.result(timeout=timeout_s)
    except FutureTimeout:
        raise TimeoutError(f"inference took more than {timeout_s:g} s") from None


class InstancePool:
    """A few instances of a non-thread-safe analyser, each lent to one request at a time.

    Instances are borrowed and returned in the request's own context (a green thread under
    eventlet), never inside the worker thread, so no green primitive is touched from a native
    thread. An instance whose work timed out may still be running: it is dropped, not returned.
    """

    def __init__(self, factory, size: int = 2, make_timeout_s: float = 60.0):
        self._factory, self._size, self._make_timeout_s = factory, size, make_timeout_s
        self._free: queue.Queue = queue.Queue()
        self._made = 0
        self._lock = threading.Lock()

    @contextmanager
    def borrow(self, wait_s: float = 30.0):
        try:
            inst = self._free.get_nowait()
        except queue.Empty:
            with self._lock:
                make = self._made < self._size
                if make:
                    self._made += 1
            if make:
                try:
                    inst = run_blocking(self._factory, timeout_s=self._make_timeout_s)
                except BaseException:
                    with self._lock:
                        self._made -= 1
                    raise
            else:
                try:
                    inst = self._free.get(timeout=wait_s)
                except queue.Empty:
                    raise TimeoutError("every face analyser is busy") from None
        healthy = False
        try:
            yield inst
            healthy = True
        finally:
            if healthy:
                self._free.put(inst)
            else:
                with self._lock:
                    self._made -= 1
