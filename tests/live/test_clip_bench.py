"""bench/clip_bench.py runs on the real photos and prints every figure it promises (not how fast the machine is)."""
from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_clip_bench_prints_its_figures():
    proc = subprocess.run([sys.executable, "bench/clip_bench.py", "--seconds", "2", "--fps", "2", "--repeats", "1"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert re.search(r"^4 frames \(2 fps\), JPEGs \d+ KB; writer (opencv|ffmpeg)$", out, re.M), out
    for label in ("before: encode at violation time", "now:    frames file at violation", "first open: encode from the file",
                  "reopen: cached", "files: frames", "share of one core at 5-7 violations/min"):
        assert label in out, (label, out)
