"""The live pipeline's running figures: counters, result latency, worker time per stage.

Kept by the runtime (one PipelineStats), shown in its pipeline status (/api/detection-pipeline-status).
"""
from __future__ import annotations

import statistics
from collections import deque

STAGES = ("decode", "face", "detector", "identity", "total", "cpu")
SAMPLES = 500            # recent results remembered for the latency and stage figures
RATE_WINDOW_S = 10.0     # processed_per_s is over this many seconds


class PipelineStats:
    def __init__(self):
        self.counters = {"processed": 0, "results_dropped": 0, "violations": 0, "warnings_held": 0,
                         "clips_written": 0, "clips_failed": 0, "loop_errors": 0,
                         "reads_without_lock": 0, "detector_runs": 0, "identity_runs": 0}
        self.worker_cpu_ms = 0.0  # the workers' CPU over every result (timings "cpu"): its mean is the cost of a job
        self.latencies: deque = deque(maxlen=SAMPLES)     # seconds from a frame's arrival to its result
        self._results_mono: deque = deque(maxlen=SAMPLES)
        self._stage_ms: deque = deque(maxlen=SAMPLES)

    def count(self, name: str) -> None:
        self.counters[name] += 1

    def result(self, latency_s: float, timings_ms: dict, now_mono: float) -> None:
        """One processed result arrived."""
        self.counters["processed"] += 1
        self.counters["detector_runs"] += "detector" in timings_ms
        self.counters["identity_runs"] += "identity" in timings_ms  # the identity model ran (a face to compare)
        self.worker_cpu_ms += float(timings_ms.get("cpu") or 0.0)
        self.latencies.append(latency_s)
        self._stage_ms.append(dict(timings_ms))
        self._results_mono.append(now_mono)

    def as_dict(self, now_mono: float) -> dict:
        lat = sorted(self.latencies)
        recent = [m for m in self._results_mono if now_mono - m <= RATE_WINDOW_S]
        return {
            "counters": dict(self.counters),
            "worker_cpu_ms": round(self.worker_cpu_ms, 1),
            "processed_per_s": round(len(recent) / RATE_WINDOW_S, 2),
            "latency_ms": None if not lat else {
                "median": round(statistics.median(lat) * 1000, 1),
                "p95": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))] * 1000, 1), "samples": len(lat)},
            "stage_ms": self.stage_medians(),
        }

    def stage_medians(self) -> dict:
        """Median worker milliseconds per stage over the recent results."""
        samples = list(self._stage_ms)
        out = {}
        for stage in STAGES:
            values = [t[stage] for t in samples if stage in t]
            if values:
                out[stage] = round(statistics.median(values), 1)
        return out
