"""CPU-heavy work off the event loop, with a timeout: under eventlet in eventlet's native thread
pool (tpool), else in a small ThreadPoolExecutor. cv2, dlib and onnxruntime let the GIL go while
they compute, so the loop keeps answering requests meanwhile. The web layer uses it as
proctor.blocking.run_blocking; the live views draw with it (views.py).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def green() -> bool:
    """Whether eventlet has patched threads (the server runs on its event loop)."""
    try:
        import eventlet.patcher

        return eventlet.patcher.is_monkey_patched("thread")
    except ImportError:
        return False


def run_off_loop(fn, *args, timeout_s: float):
    """fn(*args) off the event loop; TimeoutError if it takes longer than timeout_s."""
    timeout_s = float(timeout_s)
    if green():
        import eventlet
        from eventlet import tpool

        with eventlet.Timeout(timeout_s, TimeoutError(f"the work took more than {timeout_s:g} s")):
            return tpool.execute(fn, *args)
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="exam-inference")
    future = _executor.submit(fn, *args)
    try:
        return future.result(timeout=timeout_s)
    except FutureTimeout:
        raise TimeoutError(f"the work took more than {timeout_s:g} s") from None
