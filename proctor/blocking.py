"""CPU-heavy work (face inference in a request) off the event loop, with a timeout.

Under eventlet the work runs in eventlet's native thread pool (tpool), else in a small
ThreadPoolExecutor. `InstancePool` lends instances of a non-thread-safe analyser, one request
at a time.
"""
from __future__ import annotations

import queue
import threading
from contextlib import contextmanager

from proctor.live.offload import run_off_loop

# The off-the-loop runner lives with the live runtime (which draws its views off the loop too) and
# stands on nothing of the web layer; the web layer uses it under this name.
run_blocking = run_off_loop


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
